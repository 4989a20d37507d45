"""Mistakes caught while the command line is parsed: one `error:` line and exit code 2, no model loaded."""

import pytest

from leanlm.cli.main import main


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    return exit_info.value.code, capsys.readouterr().err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert "Traceback" not in err
    return lines[0]


def test_no_arguments_shows_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2
    assert "generate" in out + err
    assert "Traceback" not in err


def test_unknown_option(capsys):
    code, err = run_cli(capsys, "generate", "--max-new-token", "5")
    line = error_line(err)
    assert code == 2
    assert line.startswith("error: No such option: --max-new-token")
    assert "--max-new-tokens" in line


def test_non_integer_value(capsys):
    code, err = run_cli(capsys, "generate", "-n", "abc")
    line = error_line(err)
    assert code == 2
    assert "--max-new-tokens" in line


def test_unknown_command(capsys):
    code, err = run_cli(capsys, "generat")
    line = error_line(err)
    assert code == 2
    assert "Did you mean 'generate'?" in line


def test_bad_lengths_list(capsys):
    code, err = run_cli(capsys, "eval", "passkey", "--lengths", "abc")
    line = error_line(err)
    assert code == 2
    assert "--lengths expects comma-separated integers" in line


def test_unwritable_json_before_run(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, err = run_cli(capsys, "eval", "ppl", "--json", str(blocker / "out.json"))
    line = error_line(err)
    assert code == 2
    assert "cannot write --json" in line


def test_json_path_is_directory(capsys, tmp_path):
    code, err = run_cli(capsys, "bench", "generate", "--json", str(tmp_path))
    line = error_line(err)
    assert code == 2
    assert "is a directory" in line


def test_context_not_below_window(capsys):
    code, err = run_cli(capsys, "eval", "ppl", "--context", "1024", "--window", "1024")
    line = error_line(err)
    assert code == 2
    assert "--context 1024 must be smaller than --window 1024" in line


def test_help_exits_zero(capsys):
    main(["generate", "--help"])
    assert "--max-new-tokens" in capsys.readouterr().out


def test_unwritable_fit_output_before_run(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, err = run_cli(capsys, "kv", "fit", "matryoshka", "--out", str(blocker / "artifact"))
    line = error_line(err)
    assert code == 2
    assert "cannot write --out" in line


@pytest.mark.parametrize("method", ["matryoshka", "gate"])
def test_fit_output_is_existing_file(capsys, tmp_path, method):
    existing = tmp_path / "README.md"
    existing.write_text("a user's file")
    code, err = run_cli(capsys, "kv", "fit", method, "--out", str(existing))
    line = error_line(err)
    assert code == 2
    assert "already exists and is not a leanlm artifact" in line
    assert existing.read_text() == "a user's file"
