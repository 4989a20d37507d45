"""Tests of reasoning_tasks on reasoning-gym generators and on user JSONL files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leanlm.data import REASONING_DATASETS, ReasoningTask, reasoning_tasks
from leanlm.errors import DataSourceError, InvalidArgumentError


@pytest.mark.parametrize("dataset", sorted(REASONING_DATASETS))
def test_generator_gives_n_tasks(dataset: str) -> None:
    tasks = reasoning_tasks(dataset, 5, seed=3)

    assert len(tasks) == 5
    assert all(isinstance(task, ReasoningTask) for task in tasks)
    assert all(task.question.strip() for task in tasks)
    assert all(task.answer.strip() for task in tasks)
    assert all(task.dataset == dataset for task in tasks)


def test_required_datasets_present() -> None:
    assert REASONING_DATASETS["gsm-symbolic"] == "gsm_symbolic"
    assert REASONING_DATASETS["basic-arithmetic"] == "basic_arithmetic"
    assert REASONING_DATASETS["chain-sum"] == "chain_sum"
    assert REASONING_DATASETS["decimal-arithmetic"] == "decimal_arithmetic"


def test_same_seed_same_tasks() -> None:
    assert reasoning_tasks("gsm-symbolic", 8, seed=0) == reasoning_tasks("gsm-symbolic", 8, seed=0)


def test_other_seed_other_tasks() -> None:
    first = [task.question for task in reasoning_tasks("chain-sum", 8, seed=0)]
    second = [task.question for task in reasoning_tasks("chain-sum", 8, seed=1)]

    assert first != second


def test_generator_task_ids() -> None:
    tasks = reasoning_tasks("gsm-symbolic", 3, seed=17)

    assert [task.id for task in tasks] == ["gsm-symbolic-17-0", "gsm-symbolic-17-1", "gsm-symbolic-17-2"]


@pytest.mark.parametrize("n", [0, -1, True])
def test_invalid_count_rejected(n) -> None:
    with pytest.raises(InvalidArgumentError, match="positive"):
        reasoning_tasks("chain-sum", n)


def test_negative_seed_rejected() -> None:
    with pytest.raises(InvalidArgumentError, match="seed"):
        reasoning_tasks("chain-sum", 2, seed=-1)


def test_unknown_dataset_lists_names() -> None:
    with pytest.raises(DataSourceError) as caught:
        reasoning_tasks("gsm8k", 3)

    message = str(caught.value)
    assert "'gsm8k'" in message
    for name in REASONING_DATASETS:
        assert name in message


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_file_tasks(tmp_path: Path) -> None:
    path = _write_lines(
        tmp_path / "sums.jsonl",
        [json.dumps({"question": "1 + 1 = ?", "answer": "2"}), "", json.dumps({"question": "2 * 3 = ?", "answer": 6})],
    )

    tasks = reasoning_tasks(str(path), 10)

    assert tasks == [
        ReasoningTask(id="sums-0", question="1 + 1 = ?", answer="2", dataset="sums"),
        ReasoningTask(id="sums-2", question="2 * 3 = ?", answer="6", dataset="sums"),
    ]


def test_jsonl_file_first_n(tmp_path: Path) -> None:
    lines = [json.dumps({"question": f"{index} + 1 = ?", "answer": str(index + 1)}) for index in range(5)]
    path = _write_lines(tmp_path / "many.jsonl", lines)

    tasks = reasoning_tasks(path, 2)

    assert [task.id for task in tasks] == ["many-0", "many-1"]


@pytest.mark.parametrize(
    "bad_line",
    [
        "not json",
        json.dumps(["a list"]),
        json.dumps({"answer": "4"}),
        json.dumps({"question": "", "answer": "4"}),
        json.dumps({"question": "2 + 2 = ?"}),
        json.dumps({"question": "2 + 2 = ?", "answer": True}),
    ],
)
def test_jsonl_bad_line_named(tmp_path: Path, bad_line: str) -> None:
    path = _write_lines(tmp_path / "broken.jsonl", [json.dumps({"question": "q", "answer": "a"}), bad_line])

    with pytest.raises(DataSourceError) as caught:
        reasoning_tasks(str(path), 5)

    message = str(caught.value)
    assert "line 2" in message
    assert str(path) in message


def test_jsonl_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.jsonl"

    with pytest.raises(DataSourceError, match="absent.jsonl"):
        reasoning_tasks(str(path), 1)


def test_jsonl_empty_file(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "empty.jsonl", [""])

    with pytest.raises(DataSourceError, match="no tasks"):
        reasoning_tasks(str(path), 1)
