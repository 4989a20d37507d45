"""MatryoshkaKV on the real default model: fit through the CLI, use the artifact, reject bad input."""

import json

import pytest

from leanlm.cli.main import main

pytestmark = pytest.mark.integration

# small enough for CI: PCA on 5 windows, 2 training steps, uniform ranks
FIT_ARGS = ["--steps", "2", "--uniform", "--window", "128", "--calibration-windows", "6"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch, default_model):
    monkeypatch.setenv("COLUMNS", "400")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, default_model):
    out = tmp_path_factory.mktemp("mkv") / "budget-0.75"
    main(["kv", "fit", "matryoshka", "--budget", "0.75", "--out", str(out), *FIT_ARGS])  # exits only on error
    return out


def test_fit_writes_artifact(artifact):
    config = json.loads((artifact / "config.json").read_text())
    assert config["kind"] == "matryoshka-kv"
    assert config["budget"] == 0.75
    assert (artifact / "projections.safetensors").is_file()
    assert "held_out_kl" in json.loads((artifact / "report.json").read_text())


def test_eval_ppl_with_artifact_holds_budget_bytes(capsys, artifact, tmp_path):
    plain_json, kv_json = tmp_path / "plain.json", tmp_path / "kv.json"
    common = ["eval", "ppl", "--window", "320", "--context", "256", "--max-windows", "1"]
    assert run_cli(capsys, *common, "--json", str(plain_json))[0] == 0
    assert run_cli(capsys, *common, "--kv", str(artifact), "--json", str(kv_json))[0] == 0

    plain, compressed = json.loads(plain_json.read_text()), json.loads(kv_json.read_text())
    assert compressed["kv_bytes"] == pytest.approx(0.75 * plain["kv_bytes"], rel=0.02)
    assert compressed["ppl"] > 0


def test_generate_with_artifact(capsys, artifact):
    code, out, err = run_cli(capsys, "generate", "--kv", str(artifact), "-n", "8", "Hello")
    assert code == 0
    assert "KV cache" in err


@pytest.mark.parametrize("budget", ["0", "1.5", "-0.2"])
def test_budget_outside_range(capsys, tmp_path, budget):
    code, _, err = run_cli(capsys, "kv", "fit", "matryoshka", "--budget", budget, "--out", str(tmp_path / "x"))
    assert code == 2
    assert err.strip().startswith("error: budget must be a fraction of the full cache in (0, 1]")


def test_artifact_for_other_model(capsys, artifact, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    for path in artifact.iterdir():
        (other / path.name).write_bytes(path.read_bytes())
    config = json.loads((other / "config.json").read_text())
    config["base_fingerprint"] = "0000000000000000"
    (other / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli(capsys, "eval", "ppl", "--context", "256", "--window", "320", "--kv", str(other))
    assert code == 2
    assert "fit it again for this model" in err


def test_corrupt_artifact(capsys, artifact, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in artifact.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "projections.safetensors").write_bytes(b"\x00" * 64)
    code, _, err = run_cli(capsys, "generate", "--kv", str(broken), "-n", "4", "Hello")
    assert code == 2
    assert "corrupt" in err
