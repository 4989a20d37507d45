"""kvpress peer runner: file exchange with a fake worker, worker failures, argument checks, env stamp."""

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from leanlm.bench import kvpress_peer
from leanlm.bench.kvpress_peer import ensure_kvpress_env, run_kvpress_peers
from leanlm.errors import InvalidArgumentError, LeanLMError

# Echoes what it received, so a test can check the files the runner wrote.
ECHO_WORKER = """
import json, sys
from pathlib import Path
from safetensors.torch import load_file

input_dir, output = Path(sys.argv[1]), Path(sys.argv[2])
request = json.loads((input_dir / "request.json").read_text())
windows = load_file(str(input_dir / "windows.safetensors"))["windows"]
print("INFO fake worker read", tuple(windows.shape), file=sys.stderr)
print("a line without a level", file=sys.stderr)
row = {
    "method": "kvpress-none",
    "request": request,
    "windows": windows.tolist(),
    "dtype": str(windows.dtype),
    "decode_tokens_per_s": {"128": 2.5},
}
output.write_text(json.dumps([row]))
"""

FAILING_WORKER = """
import sys
for i in range(30):
    print(f"worker line {i}", file=sys.stderr)
sys.exit(3)
"""

SLEEPING_WORKER = "import time; time.sleep(30)"
SILENT_WORKER = "pass"


@pytest.fixture
def model_dir(tmp_path) -> Path:
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "config.json").write_text("{}")
    return directory


@pytest.fixture
def windows() -> torch.Tensor:
    return torch.arange(2 * 96).reshape(2, 96)  # [N, T]


def use_worker(monkeypatch, tmp_path, source: str) -> None:
    script = tmp_path / "fake_worker.py"
    script.write_text(textwrap.dedent(source))
    monkeypatch.setattr(kvpress_peer, "WORKER_SCRIPT", script)
    monkeypatch.setattr(kvpress_peer, "ensure_kvpress_env", lambda home: Path(sys.executable))


def forbid_env_build(monkeypatch) -> None:
    def fail(home):
        raise AssertionError("the kvpress environment must not be built for invalid arguments")

    monkeypatch.setattr(kvpress_peer, "ensure_kvpress_env", fail)


def test_exchange_round_trip(monkeypatch, tmp_path, model_dir, windows):
    use_worker(monkeypatch, tmp_path, ECHO_WORKER)
    passkey = [{"tokens": list(range(80)), "key": "12345"}]
    results = run_kvpress_peers(
        model_dir, windows.int(), 72, ["snapkv", "observed-attention"], [0.25, 0.5],
        home=tmp_path, passkey=passkey, decode_contexts=[128], decode_tokens=4,
    )

    assert len(results) == 1
    row = results[0]
    assert row["windows"] == windows.tolist()
    assert row["dtype"] == "torch.int64"
    assert row["decode_tokens_per_s"] == {128: 2.5}

    request = row["request"]
    assert request["model_dir"] == str(model_dir.resolve())
    assert request["context"] == 72
    assert request["ratios"] == [0.25, 0.5]
    assert request["passkey"] == passkey
    assert request["decode_contexts"] == [128]
    assert request["decode_tokens"] == 4
    assert request["presses"] == [
        {"name": "snapkv", "class": "SnapKVPress", "needs_eager": False},
        {"name": "observed-attention", "class": "ObservedAttentionPress", "needs_eager": True},
    ]


def test_exchange_relays_worker_output(monkeypatch, tmp_path, model_dir, windows, caplog):
    use_worker(monkeypatch, tmp_path, ECHO_WORKER)
    with caplog.at_level("INFO", logger="leanlm.bench.kvpress_peer"):
        run_kvpress_peers(model_dir, windows, 72, ["knorm"], [0.5], home=tmp_path)
    levels = {record.getMessage(): record.levelname for record in caplog.records}
    assert levels["kvpress worker: fake worker read (2, 96)"] == "INFO"
    assert levels["kvpress worker: a line without a level"] == "WARNING"


def test_worker_failure_quotes_last_lines(monkeypatch, tmp_path, model_dir, windows):
    use_worker(monkeypatch, tmp_path, FAILING_WORKER)
    with pytest.raises(LeanLMError) as info:
        run_kvpress_peers(model_dir, windows, 72, ["knorm"], [0.5], home=tmp_path)
    message = str(info.value)
    assert "exit code 3" in message
    assert "worker line 29" in message
    assert "worker line 10" in message
    assert "worker line 9\n" not in message  # only the last 20 lines are quoted


def test_worker_timeout(monkeypatch, tmp_path, model_dir, windows):
    use_worker(monkeypatch, tmp_path, SLEEPING_WORKER)
    with pytest.raises(LeanLMError, match="timed out after 1 s"):
        run_kvpress_peers(model_dir, windows, 72, ["knorm"], [0.5], home=tmp_path, timeout_s=1)


def test_worker_without_results(monkeypatch, tmp_path, model_dir, windows):
    use_worker(monkeypatch, tmp_path, SILENT_WORKER)
    with pytest.raises(LeanLMError, match="missing or not JSON"):
        run_kvpress_peers(model_dir, windows, 72, ["knorm"], [0.5], home=tmp_path)


def test_unknown_press_lists_supported(monkeypatch, tmp_path, model_dir, windows):
    forbid_env_build(monkeypatch)
    with pytest.raises(InvalidArgumentError) as info:
        run_kvpress_peers(model_dir, windows, 72, ["snapkv", "h2o"], [0.5], home=tmp_path)
    message = str(info.value)
    assert "'h2o'" in message
    for name in kvpress_peer.SUPPORTED_PRESSES:
        assert name in message


@pytest.mark.parametrize("ratios", [[1.0], [-0.1], [0.5, 1.5], []])
def test_ratio_outside_range(monkeypatch, tmp_path, model_dir, windows, ratios):
    forbid_env_build(monkeypatch)
    with pytest.raises(InvalidArgumentError, match=r"\[0, 1\)"):
        run_kvpress_peers(model_dir, windows, 72, ["knorm"], ratios, home=tmp_path)


@pytest.mark.parametrize("context", [96, 200, 0])
def test_context_outside_window(monkeypatch, tmp_path, model_dir, windows, context):
    forbid_env_build(monkeypatch)
    with pytest.raises(InvalidArgumentError, match="window length minus 1"):
        run_kvpress_peers(model_dir, windows, context, ["knorm"], [0.5], home=tmp_path)


def test_prefill_shorter_than_snapkv_window(monkeypatch, tmp_path, model_dir, windows):
    forbid_env_build(monkeypatch)
    with pytest.raises(InvalidArgumentError, match="press snapkv needs prefills of at least 65 tokens"):
        run_kvpress_peers(model_dir, windows, 72, ["snapkv"], [0.5], home=tmp_path, decode_contexts=[32])


def test_empty_press_list(monkeypatch, tmp_path, model_dir, windows):
    forbid_env_build(monkeypatch)
    with pytest.raises(InvalidArgumentError, match="Use one or more of"):
        run_kvpress_peers(model_dir, windows, 72, [], [0.5], home=tmp_path)


def test_model_dir_without_config(monkeypatch, tmp_path, windows):
    forbid_env_build(monkeypatch)
    with pytest.raises(LeanLMError, match="has no config.json"):
        run_kvpress_peers(tmp_path, windows, 72, ["knorm"], [0.5], home=tmp_path)


def test_passkey_prompt_without_key(monkeypatch, tmp_path, model_dir, windows):
    forbid_env_build(monkeypatch)
    with pytest.raises(InvalidArgumentError, match="string 'key'"):
        run_kvpress_peers(model_dir, windows, 72, ["knorm"], [0.5], home=tmp_path, passkey=[{"tokens": [1, 2]}])


def venv_paths(home: Path) -> tuple[Path, Path]:
    venv = home / "venvs" / f"kvpress-{kvpress_peer.KVPRESS_VERSION}"
    return venv, venv / "bin" / "python"


def test_ready_env_is_reused(monkeypatch, tmp_path):
    venv, python = venv_paths(tmp_path)
    python.parent.mkdir(parents=True)
    python.write_text("")
    (venv / kvpress_peer.READY_STAMP).write_text(json.dumps(kvpress_peer._env_requirements()))

    def fail(*args, **kwargs):
        raise AssertionError("a ready environment must not be rebuilt")

    monkeypatch.setattr(kvpress_peer, "_build_env", fail)
    assert ensure_kvpress_env(tmp_path) == python


def test_failed_build_leaves_no_stamp(monkeypatch, tmp_path):
    venv, _ = venv_paths(tmp_path)

    def fail_midway(venv, python, requirements):
        venv.mkdir(parents=True)
        raise LeanLMError("pip failed")

    monkeypatch.setattr(kvpress_peer, "_build_env", fail_midway)
    with pytest.raises(LeanLMError, match="pip failed"):
        ensure_kvpress_env(tmp_path)
    assert not (venv / kvpress_peer.READY_STAMP).exists()


def test_incomplete_env_is_rebuilt(monkeypatch, tmp_path):
    venv, python = venv_paths(tmp_path)
    venv.mkdir(parents=True)
    (venv / "leftover").write_text("from an interrupted build")
    (venv / kvpress_peer.READY_STAMP).write_text(json.dumps({"torch": "torch==0.0.1"}))  # outdated stamp
    builds = []

    def build(venv, python, requirements):
        builds.append(requirements)
        python.parent.mkdir(parents=True)
        python.write_text("")

    monkeypatch.setattr(kvpress_peer, "_build_env", build)
    assert ensure_kvpress_env(tmp_path) == python
    assert builds == [kvpress_peer._env_requirements()]
    assert not (venv / "leftover").exists()
    assert json.loads((venv / kvpress_peer.READY_STAMP).read_text()) == builds[0]


def test_setup_failure_quotes_output():
    command = [sys.executable, "-c", "import sys; print('no matching distribution'); sys.exit(1)"]
    with pytest.raises(LeanLMError) as info:
        kvpress_peer._run_step(command, timeout_s=60)
    message = str(info.value)
    assert "exit code 1" in message
    assert "import sys; print('no matching distribution')" in message
    assert "\nno matching distribution\n" in message
