"""Artifact directories: atomic save, kind and base-model checks, corrupt files."""

import json

import pytest
import torch

from leanlm.artifacts import load_artifact, save_artifact
from leanlm.errors import ArtifactError


def save_sample(path, fingerprint="abc123"):
    return save_artifact(
        path,
        kind="sample-kind",
        base_model="tiny",
        base_fingerprint=fingerprint,
        config={"rank": 4},
        tensors={"weights": {"basis": torch.eye(3)}},
        report={"ppl": 1.5},
    )


def test_round_trip(tmp_path):
    save_sample(tmp_path / "art")
    artifact = load_artifact(tmp_path / "art", kinds=("sample-kind",), base_fingerprint="abc123")
    assert artifact.config["rank"] == 4
    assert artifact.config["base_model"] == "tiny"
    assert "leanlm_version" in artifact.config
    assert torch.equal(artifact.tensors["weights"]["basis"], torch.eye(3))
    assert artifact.report == {"ppl": 1.5}


def test_save_replaces_and_leaves_no_temp(tmp_path):
    save_sample(tmp_path / "art")
    save_sample(tmp_path / "art", fingerprint="def456")
    assert load_artifact(tmp_path / "art", kinds=("sample-kind",)).config["base_fingerprint"] == "def456"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_other_model_rejected(tmp_path):
    save_sample(tmp_path / "art")
    with pytest.raises(ArtifactError, match="fit it again for this model"):
        load_artifact(tmp_path / "art", kinds=("sample-kind",), base_fingerprint="other")


def test_other_kind_rejected(tmp_path):
    save_sample(tmp_path / "art")
    with pytest.raises(ArtifactError, match="sample-kind"):
        load_artifact(tmp_path / "art", kinds=("matryoshka-kv",))


def test_missing_directory_rejected(tmp_path):
    with pytest.raises(ArtifactError, match="not a leanlm artifact"):
        load_artifact(tmp_path / "nothing", kinds=("sample-kind",))


def test_corrupt_tensor_file_rejected(tmp_path):
    save_sample(tmp_path / "art")
    (tmp_path / "art" / "weights.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(ArtifactError, match="corrupt"):
        load_artifact(tmp_path / "art", kinds=("sample-kind",))


def test_corrupt_config_rejected(tmp_path):
    save_sample(tmp_path / "art")
    (tmp_path / "art" / "config.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt"):
        load_artifact(tmp_path / "art", kinds=("sample-kind",))


def test_config_sorted_json(tmp_path):
    save_sample(tmp_path / "art")
    text = (tmp_path / "art" / "config.json").read_text()
    assert list(json.loads(text)) == sorted(json.loads(text))


def test_unwritable_target_rejected_without_leftovers(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ArtifactError, match="cannot write the artifact"):
        save_sample(blocker / "art")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_save_refuses_existing_file(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")

    with pytest.raises(ArtifactError, match="not a leanlm artifact"):
        save_artifact(target, kind="k", base_model="m", base_fingerprint="f", config={}, tensors={}, report={})

    assert target.read_text() == "keep me"


def test_save_refuses_other_directory(tmp_path):
    target = tmp_path / "src"
    target.mkdir()
    (target / "code.py").write_text("x = 1")

    with pytest.raises(ArtifactError, match="not a leanlm artifact"):
        save_artifact(target, kind="k", base_model="m", base_fingerprint="f", config={}, tensors={}, report={})

    assert (target / "code.py").read_text() == "x = 1"


def test_save_replaces_earlier_artifact(tmp_path):
    target = tmp_path / "artifact"
    save_artifact(target, kind="k", base_model="m", base_fingerprint="f", config={"version": 1}, tensors={}, report={})
    save_artifact(target, kind="k", base_model="m", base_fingerprint="f", config={"version": 2}, tensors={}, report={})

    assert json.loads((target / "config.json").read_text())["version"] == 2


def test_other_kind_not_replaced(tmp_path):
    save_sample(tmp_path / "art")
    with pytest.raises(ArtifactError, match="of kind 'sample-kind', not 'adamoe'"):
        save_artifact(
            tmp_path / "art", kind="adamoe", base_model="tiny", base_fingerprint="abc123", config={},
            tensors={"routers": {"w": torch.zeros(1)}}, report={},
        )

    assert load_artifact(tmp_path / "art", kinds=("sample-kind",)).config["rank"] == 4
