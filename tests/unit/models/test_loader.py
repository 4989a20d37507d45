"""Tests of load_model: how each kind of spec resolves, what a loaded model looks like, and its errors."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from leanlm.errors import ModelFileError, ModelNotFoundError
from leanlm.models import REGISTRY, LoadedModel, RegistryEntry, gguf_cache, load_model
from leanlm.models.gguf_cache import gguf_fingerprint


def copy_model_dir(source: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "model-copy"
    shutil.copytree(source, copy)
    return copy


class SaveTinyModel:
    """Stand-in for `gguf_cache._convert` that writes the tiny model where a conversion would go."""

    def __init__(self, model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.calls = 0

    def __call__(self, gguf: Path, target: Path) -> None:
        self.calls += 1
        staging = target.with_name(f".tmp-{target.name}-fake")
        self.model.save_pretrained(staging)
        self.tokenizer.save_pretrained(staging)
        os.replace(staging, target)


def test_unknown_name_lists_registry() -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        load_model("no-such-model")

    message = str(caught.value)
    assert "'no-such-model'" in message
    for name in REGISTRY:
        assert name in message


def test_missing_gguf_file_raises(tmp_path: Path) -> None:
    missing = tmp_path / "x.gguf"

    with pytest.raises(ModelFileError) as caught:
        load_model(str(missing))

    assert str(missing) in str(caught.value)


def test_non_gguf_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"<html>an error page saved as a model</html>")

    with pytest.raises(ModelFileError, match="not a GGUF file"):
        load_model(str(path))


def test_directory_without_config_raises(tmp_path: Path) -> None:
    directory = tmp_path / "empty-model"
    directory.mkdir()

    with pytest.raises(ModelFileError) as caught:
        load_model(str(directory))

    assert str(directory) in str(caught.value)
    assert "config.json" in str(caught.value)


def test_missing_path_with_slashes(tmp_path: Path) -> None:
    # More than one slash rules out a hub id, so a missing local path is reported as unknown.
    with pytest.raises(ModelNotFoundError, match="unknown model"):
        load_model("not/there/either")


def test_missing_local_path_raises(tmp_path: Path) -> None:
    for spec in (str(tmp_path / "missing"), "./missing-model"):
        with pytest.raises(ModelNotFoundError, match="not found; check the path"):
            load_model(spec)


def test_artifact_directory_not_a_model(tmp_path: Path) -> None:
    directory = tmp_path / "adamoe-10"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"kind": "adamoe", "top_k": 14}))

    with pytest.raises(ModelFileError, match="is a leanlm 'adamoe' artifact, not a model"):
        load_model(str(directory))


def test_existing_file_not_model(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a model")

    with pytest.raises(ModelFileError, match="not a .gguf model"):
        load_model(str(path))


def test_hub_id_offline_raises() -> None:
    # The conftest puts huggingface_hub in offline mode with an empty cache, so nothing is fetched.
    with pytest.raises(ModelNotFoundError) as caught:
        load_model("leanlm-test-org/no-such-repo")

    message = str(caught.value)
    assert "'leanlm-test-org/no-such-repo'" in message
    assert "hub" in message


def test_local_directory_loads(saved_model_dir: Path, tiny_llama: LlamaForCausalLM) -> None:
    loaded = load_model(str(saved_model_dir))

    assert isinstance(loaded, LoadedModel)
    assert loaded.name == str(saved_model_dir)
    assert loaded.model.training is False
    assert loaded.model.dtype == torch.float32
    assert loaded.max_context == 512
    for name, weight in tiny_llama.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], weight), name


def test_loaded_tokenizer_pads_left(saved_model_dir: Path, word_tokenizer: PreTrainedTokenizerFast) -> None:
    # The saved tokenizer pads on the right and has no pad token, so load_model has to fix both.
    assert word_tokenizer.pad_token is None
    assert word_tokenizer.padding_side == "right"

    tokenizer = load_model(str(saved_model_dir)).tokenizer

    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token is not None
    assert tokenizer.pad_token == tokenizer.eos_token


def test_local_dtype_option(saved_model_dir: Path) -> None:
    loaded = load_model(str(saved_model_dir), dtype=torch.bfloat16)

    assert loaded.model.dtype == torch.bfloat16


def test_fingerprint_stable_across_loads(saved_model_dir: Path) -> None:
    first = load_model(str(saved_model_dir)).fingerprint
    second = load_model(str(saved_model_dir)).fingerprint

    assert first == second
    assert len(first) == 16


def test_fingerprint_follows_config(saved_model_dir: Path, tmp_path: Path) -> None:
    directory = copy_model_dir(saved_model_dir, tmp_path)
    before = load_model(str(directory)).fingerprint
    config = json.loads((directory / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5 if config["rms_norm_eps"] != 1e-5 else 1e-6
    (directory / "config.json").write_text(json.dumps(config))

    after = load_model(str(directory)).fingerprint

    assert after != before


def test_directory_without_weights_raises(saved_model_dir: Path, tmp_path: Path) -> None:
    directory = copy_model_dir(saved_model_dir, tmp_path)
    for weights in directory.glob("*.safetensors"):
        weights.unlink()

    with pytest.raises(ModelFileError, match="cannot load model"):
        load_model(str(directory))


def test_invalid_config_json_raises(saved_model_dir: Path, tmp_path: Path) -> None:
    directory = copy_model_dir(saved_model_dir, tmp_path)
    (directory / "config.json").write_text("{ this is not json")

    with pytest.raises(ModelFileError, match="cannot load model"):
        load_model(str(directory))


def test_directory_without_tokenizer_raises(saved_model_dir: Path, tmp_path: Path) -> None:
    directory = copy_model_dir(saved_model_dir, tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (directory / name).unlink()

    with pytest.raises(ModelFileError, match="cannot load model"):
        load_model(str(directory))


def test_unknown_model_type_raises(saved_model_dir: Path, tmp_path: Path) -> None:
    directory = copy_model_dir(saved_model_dir, tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config["model_type"] = "leanlm-test-unknown-architecture"
    (directory / "config.json").write_text(json.dumps(config))

    with pytest.raises(ModelFileError, match="cannot load model"):
        load_model(str(directory))


def test_gguf_file_loads_via_cache(
    tmp_path: Path,
    isolated_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_llama: LlamaForCausalLM,
    word_tokenizer: PreTrainedTokenizerFast,
) -> None:
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(100))
    convert = SaveTinyModel(tiny_llama, word_tokenizer)
    monkeypatch.setattr(gguf_cache, "_convert", convert)

    first = load_model(str(gguf))
    second = load_model(str(gguf))

    assert convert.calls == 1
    assert first.fingerprint == gguf_fingerprint(gguf)
    assert second.fingerprint == first.fingerprint
    assert (isolated_home / "models" / f"tiny-{first.fingerprint}").is_dir()
    assert first.model.training is False
    assert first.tokenizer.padding_side == "left"


def test_registry_name_loads_via_cache(
    tmp_path: Path,
    isolated_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_llama: LlamaForCausalLM,
    word_tokenizer: PreTrainedTokenizerFast,
) -> None:
    gguf = tmp_path / "registered.gguf"
    gguf.write_bytes(b"GGUF" + bytes(100))
    homes: list[Path] = []

    def locate(home: Path) -> Path:
        homes.append(home)
        return gguf

    entry = RegistryEntry(
        name="tiny-registered",
        package="tiny-registered",
        module="json",  # any importable module counts as the installed package
        install="pip install tiny-registered",
        description="the tiny test model under a registry name",
        has_chat_template=False,
        locate=locate,
    )
    monkeypatch.setitem(REGISTRY, entry.name, entry)
    monkeypatch.setattr(gguf_cache, "_convert", SaveTinyModel(tiny_llama, word_tokenizer))

    loaded = load_model("tiny-registered")

    assert homes == [isolated_home]
    assert loaded.name == "tiny-registered"
    assert loaded.fingerprint == gguf_fingerprint(gguf)
