"""`leanlm sift run` and `leanlm sift report` without a model: bad input, an unreachable server, a report."""

import json
import socket

import pytest

from leanlm.cli.main import main
from leanlm.sift.pipeline import ItemRecord


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    """Return the one `error:` line; log lines (retries are logged) and the progress bar may precede it."""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    assert "Traceback" not in err
    return lines[0]


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_bad_backend(capsys, tmp_path):
    code, _, err = run_cli(capsys, "sift", "run", "--n", "1", "--backend", "ftp://x", "--out", str(tmp_path))
    assert code == 2
    assert "--backend must be 'local' or an http(s) URL" in error_line(err)


def test_bad_dataset_file(capsys, tmp_path):
    bad = tmp_path / "tasks.jsonl"
    bad.write_text("not json\n")
    code, _, err = run_cli(capsys, "sift", "run", "--dataset", str(bad), "--n", "1", "--out", str(tmp_path / "out"))
    assert code == 2
    assert error_line(err).startswith("error:")


def test_unreachable_server(capsys, tmp_path):
    url = f"http://127.0.0.1:{unused_port()}"
    code, _, err = run_cli(capsys, "sift", "run", "--n", "1", "--backend", url, "-m", "any", "--out", str(tmp_path))
    assert code == 2
    line = error_line(err)
    assert url in line
    assert "attempts" in line


def test_report_missing_directory(capsys, tmp_path):
    code, _, err = run_cli(capsys, "sift", "report", str(tmp_path / "nowhere"))
    assert code == 2
    assert "not found" in error_line(err)


def test_report_summarises_records(capsys, tmp_path):
    records = [
        ItemRecord("a", "q", "1", stickers={"stage1": "1. x\nQuestion: y?"}, stage="stage1", answer="1", correct=True, input_tokens=10, output_tokens=5),
        ItemRecord("b", "q", "2", stickers={"stage1": None}, stage="fallback", answer="3", correct=False, input_tokens=20, output_tokens=5),
    ]
    from dataclasses import asdict

    (tmp_path / "sift.jsonl").write_text("".join(json.dumps(asdict(r)) + "\n" for r in records))
    report = tmp_path / "report.json"

    code, out, _ = run_cli(capsys, "sift", "report", str(tmp_path), "--json", str(report))

    summary = json.loads(report.read_text())
    assert code == 0
    assert summary["rows"] == [{"method": "sift", "accuracy": 0.5, "tokens_per_item": 20.0, "n": 2}]
    assert summary["resolved_by_stage"] == {"stage1": 1, "stage2": 0, "stage3": 0, "fallback": 1}
    assert summary["sticker_format_rate"] == 0.5
    assert "sift: accuracy 0.500, 20 tokens per item" in out


def test_report_stagewise_with_baselines(capsys, tmp_path):
    from dataclasses import asdict

    records = [
        ItemRecord("a", "q", "1", stage="stage1", answer="1", correct=True, input_tokens=30, output_tokens=10),
        ItemRecord("b", "q", "2", stage="stage2", answer="2", correct=True, input_tokens=50, output_tokens=10),
    ]
    (tmp_path / "sift.jsonl").write_text("".join(json.dumps(asdict(r)) + "\n" for r in records))
    baseline = lambda item, correct: {"id": item, "answer": "x", "correct": correct, "samples": ["x"], "input_tokens": 8, "output_tokens": 2}
    (tmp_path / "baselines.json").write_text(json.dumps({
        "zero_shot_cot": [baseline("a", False), baseline("b", False)],
        "self_consistency": [baseline("a", True), baseline("b", False)],
        "self_consistency_samples": 5,
    }))
    report = tmp_path / "report.json"

    code, _, _ = run_cli(capsys, "sift", "report", str(tmp_path), "--json", str(report))

    accuracy = {row["method"]: row["accuracy"] for row in json.loads(report.read_text())["rows"]}
    assert code == 0
    assert accuracy == {
        "sift": 1.0, "zero_shot_cot": 0.0, "sift_stage1": 0.5, "sift_stage2": 1.0, "sift_stage3": 1.0,
        "self_consistency": 0.5,
    }


def test_report_on_corrupt_baselines_is_one_error_line(capsys, tmp_path):
    from dataclasses import asdict

    record = ItemRecord("a", "q", "1", stage="stage1", answer="1", correct=True, input_tokens=3, output_tokens=1)
    (tmp_path / "sift.jsonl").write_text(json.dumps(asdict(record)) + "\n")
    (tmp_path / "baselines.json").write_text('{"zero_shot_cot": [')

    code, _, err = run_cli(capsys, "sift", "report", str(tmp_path))

    assert code == 2
    assert "baselines.json is not valid JSON" in error_line(err)


def test_rerun_with_other_settings_is_rejected(tmp_path):
    from leanlm.errors import InvalidArgumentError
    from leanlm.sift.evaluate import check_settings

    check_settings(tmp_path, {"dataset": "small-gcd", "n": 2, "sift": {"max_new_tokens": 32}})
    check_settings(tmp_path, {"dataset": "small-gcd", "n": 2, "sift": {"max_new_tokens": 32}})  # same: accepted

    with pytest.raises(InvalidArgumentError, match="sift: .*32.* before"):
        check_settings(tmp_path, {"dataset": "small-gcd", "n": 2, "sift": {"max_new_tokens": 16}})
