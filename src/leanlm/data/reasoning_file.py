"""Read reasoning tasks from a user JSONL file of {"question": ..., "answer": ...} lines."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from leanlm.data.records import ReasoningTask
from leanlm.errors import DataSourceError

logger = logging.getLogger(__name__)


def read_task_file(path: Path, limit: int) -> list[ReasoningTask]:
    """Return the first `limit` tasks of a JSONL file, in file order.

    Blank lines are skipped but still counted, so the index in a task's id "<file stem>-<line index>"
    is the 0-based position of its line in the file. Lines after the first `limit` tasks are not
    validated. Raises DataSourceError for a file that is missing or has no tasks, and for a line
    that is not a JSON object with a non-empty string "question" and a string or number "answer".
    The line error names the file and the 1-based line number.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataSourceError(
            f"Failed to read the reasoning task file {path}: {error}. "
            "Pass the path of a UTF-8 JSONL file with one {\"question\": ..., \"answer\": ...} object per line."
        ) from error

    tasks: list[ReasoningTask] = []
    for index, line in enumerate(text.splitlines()):
        if len(tasks) == limit:
            break
        if not line.strip():
            continue
        question, answer = _parse_line(path, index + 1, line)
        tasks.append(ReasoningTask(id=f"{path.stem}-{index}", question=question, answer=answer, dataset=path.stem))

    if not tasks:
        raise DataSourceError(f"The reasoning task file {path} contains no tasks. Add one JSON object per line.")
    if len(tasks) < limit:
        logger.info("Read %d tasks from %s, fewer than the %d requested", len(tasks), path, limit)
    return tasks


def _parse_line(path: Path, line_number: int, line: str) -> tuple[str, str]:
    try:
        record: Any = json.loads(line)
    except json.JSONDecodeError as error:
        raise _line_error(path, line_number, f"invalid JSON ({error.msg})") from error

    if not isinstance(record, dict):
        raise _line_error(path, line_number, f"expected a JSON object, got {type(record).__name__}")

    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise _line_error(path, line_number, f"'question' must be a non-empty string, got {question!r}")

    answer = record.get("answer")
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise _line_error(path, line_number, f"'answer' must be a string or a number, got {answer!r}")

    return question, str(answer)


def _line_error(path: Path, line_number: int, problem: str) -> DataSourceError:
    return DataSourceError(
        f"Invalid reasoning task at line {line_number} of {path}: {problem}. "
        "Each line must be a JSON object such as {\"question\": \"2 + 2 = ?\", \"answer\": \"4\"}."
    )
