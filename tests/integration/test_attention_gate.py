"""Attention-Gate on the real default model: fit through the CLI, use the artifact alone and combined with a
MatryoshkaKV artifact, reject bad input."""

import json

import pytest

from leanlm.cli.main import main

from .test_matryoshka import run_cli

pytestmark = pytest.mark.integration

# Small enough for CI: 2 training steps on 320-token windows. The held-out context (240 tokens) is long
# enough that the 4 sink and 64 recent tokens fit in half of it.
FIT_ARGS = ["--steps", "2", "--window", "320", "--calibration-windows", "3"]
PPL_ARGS = ["eval", "ppl", "--window", "320", "--context", "256", "--max-windows", "1"]


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch, default_model):
    monkeypatch.setenv("COLUMNS", "400")


@pytest.fixture(scope="module")
def gate(tmp_path_factory, default_model):
    out = tmp_path_factory.mktemp("gate") / "evict-0.5"
    main(["kv", "fit", "gate", "--evict", "0.5", "--out", str(out), *FIT_ARGS])  # exits only on error
    return out


@pytest.fixture(scope="module")
def matryoshka(tmp_path_factory, default_model):
    out = tmp_path_factory.mktemp("mkv") / "budget-0.5"
    args = ["--steps", "0", "--uniform", "--window", "128", "--calibration-windows", "3"]
    main(["kv", "fit", "matryoshka", "--budget", "0.5", "--out", str(out), *args])
    return out


def ppl_json(capsys, tmp_path, name: str, *kv_args: str) -> dict:
    path = tmp_path / f"{name}.json"
    code, _, err = run_cli(capsys, *PPL_ARGS, *kv_args, "--json", str(path))
    assert code == 0, err
    return json.loads(path.read_text())


def test_fit_writes_artifact(gate):
    config = json.loads((gate / "config.json").read_text())
    report = json.loads((gate / "report.json").read_text())

    assert config["kind"] == "attention-gate"
    assert config["evict"] == 0.5
    assert (gate / "gates.safetensors").is_file()
    assert report["held_out_kv_bytes_gate"] == pytest.approx(0.5 * report["held_out_kv_bytes_full"], rel=0.02)


def test_eval_ppl_bytes_follow_eviction(capsys, gate, tmp_path):
    plain = ppl_json(capsys, tmp_path, "plain")
    gated = ppl_json(capsys, tmp_path, "gate", "--kv", str(gate))

    assert gated["kv_bytes"] == pytest.approx(0.5 * plain["kv_bytes"], rel=0.02)
    assert gated["ppl"] > 0


def test_combined_bytes_multiply(capsys, gate, matryoshka, tmp_path):
    plain = ppl_json(capsys, tmp_path, "plain")
    combined = ppl_json(capsys, tmp_path, "combined", "--kv", str(gate), "--kv", str(matryoshka))

    assert combined["kv_bytes"] == pytest.approx(0.25 * plain["kv_bytes"], rel=0.02)


def test_generate_with_gate(capsys, gate):
    code, out, err = run_cli(capsys, "generate", "--kv", str(gate), "-n", "8", "Hello", "Tell me a story")
    assert code == 0, err
    assert "KV cache" in err


@pytest.mark.parametrize("evict", ["1", "1.5", "-0.2"])
def test_eviction_ratio_outside_range(capsys, tmp_path, evict):
    code, _, err = run_cli(capsys, "kv", "fit", "gate", "--evict", evict, "--out", str(tmp_path / "x"))
    assert code == 2
    assert err.strip().startswith("error: eviction ratio must lie in [0, 1)")


def test_artifact_for_other_model(capsys, gate, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    for path in gate.iterdir():
        (other / path.name).write_bytes(path.read_bytes())
    config = json.loads((other / "config.json").read_text())
    config["base_fingerprint"] = "0000000000000000"
    (other / "config.json").write_text(json.dumps(config))

    code, _, err = run_cli(capsys, *PPL_ARGS, "--kv", str(other))
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "fit it again for this model" in err


def test_corrupt_artifact(capsys, gate, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in gate.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "gates.safetensors").write_bytes(b"\x00" * 64)

    code, _, err = run_cli(capsys, "generate", "--kv", str(broken), "-n", "4", "Hello")
    assert code == 2
    assert "corrupt" in err
