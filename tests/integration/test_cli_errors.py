"""Every bad input the CLI can get prints one line naming the problem and exits with code 2."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from leanlm.cli.main import main

pytestmark = pytest.mark.integration


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    """Run `leanlm ARGV` in this process; return (exit code, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    return exit_info.value.code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert lines[0].startswith("error:")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} missing from {lines[0]!r}"


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    # rich wraps at the terminal width; a wide one keeps each message on one line as a user's shell would
    monkeypatch.setenv("COLUMNS", "400")


@pytest.fixture(autouse=True)
def converted_default_model(default_model):
    # The first load of the GGUF file prints transformers' conversion progress bar on stderr; convert
    # before any test reads stderr, so each reads only what its own command printed.
    return default_model


def test_unknown_model_name(capsys):
    code, err = run_cli(capsys, "generate", "-m", "no-such-model", "hello")
    assert_one_line_error(code, err, "unknown model", "smollm2-135m-instruct")


def test_missing_model_file(capsys, tmp_path):
    code, err = run_cli(capsys, "generate", "-m", str(tmp_path / "missing.gguf"), "hello")
    assert_one_line_error(code, err, "not found", "missing.gguf")


def test_corrupt_model_file_magic(capsys, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a model" * 100)
    code, err = run_cli(capsys, "generate", "-m", str(bad), "hello")
    assert_one_line_error(code, err, "not a GGUF file")


def test_corrupt_model_file_body(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LEANLM_HOME", str(tmp_path / "home"))
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)
    code, err = run_cli(capsys, "generate", "-m", str(bad), "hello")
    # the first load of a GGUF file announces its conversion before the conversion fails
    notice, rest = err.split("\n", 1)
    assert notice.startswith("INFO leanlm.models.gguf_cache: converting truncated.gguf")
    assert_one_line_error(code, rest, "cannot read GGUF file")


def test_empty_prompt(capsys):
    code, err = run_cli(capsys, "generate", "   ")
    assert_one_line_error(code, err, "prompt is empty")


@pytest.mark.parametrize("count", ["0", "-3"])
def test_non_positive_new_tokens(capsys, count):
    code, err = run_cli(capsys, "generate", "-n", count, "hello")
    assert_one_line_error(code, err, "max_new_tokens", count)


def test_non_positive_window(capsys):
    code, err = run_cli(capsys, "eval", "ppl", "--window", "0")
    assert_one_line_error(code, err, "window")


def test_non_positive_passkey_trials(capsys):
    code, err = run_cli(capsys, "eval", "passkey", "--trials", "0")
    assert_one_line_error(code, err, "trials")


def test_context_too_long(capsys):
    code, err = run_cli(capsys, "generate", "-n", "9000", "hello")
    assert_one_line_error(code, err, "8192", "exceed")


def test_unwritable_home(capsys, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("LEANLM_HOME", str(blocker / "home"))
    code, err = run_cli(capsys, "generate", "hello")
    assert_one_line_error(code, err, "LEANLM_HOME", str(blocker / "home"))


def test_console_script_exit_code(tmp_path):
    # the installed `leanlm` entry point, as a user runs it, not the in-process main()
    env = os.environ | {"COLUMNS": "400"}
    script = Path(sys.executable).with_name("leanlm")
    proc = subprocess.run([str(script), "generate", "-m", "no-such-model", "hi"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown model")
    assert "Traceback" not in proc.stderr
