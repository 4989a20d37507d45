"""Reasoning tasks with reference solutions, from reasoning-gym generators or a user JSONL file."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from leanlm.data.locate import REASONING_GYM
from leanlm.data.reasoning_file import read_task_file
from leanlm.data.records import ReasoningTask
from leanlm.errors import DataSourceError, InvalidArgumentError

logger = logging.getLogger(__name__)


# leanlm dataset name -> reasoning-gym generator name.
REASONING_DATASETS: dict[str, str] = {
    "gsm-symbolic": "gsm_symbolic",
    "basic-arithmetic": "basic_arithmetic",
    "chain-sum": "chain_sum",
    "decimal-arithmetic": "decimal_arithmetic",
    "two-term-addition": "basic_arithmetic",
    "single-digit-products": "products",
    "letter-counting": "letter_counting",
    "small-gcd": "gcd",
}

# leanlm dataset name -> keyword arguments for reasoning_gym.create_dataset. The arithmetic configs
# use at most 3-digit numbers and at most 5 terms, fewer than reasoning-gym 0.1.25's defaults
# (4 digits, 6 terms), so that the tasks stay within reach of small models.
REASONING_CONFIGS: dict[str, dict[str, Any]] = {
    "gsm-symbolic": {},
    "basic-arithmetic": {"min_terms": 2, "max_terms": 4, "min_digits": 1, "max_digits": 3},
    "chain-sum": {"min_terms": 2, "max_terms": 5, "min_digits": 1, "max_digits": 3},
    "decimal-arithmetic": {"min_num_decimal_places": 1, "max_num_decimal_places": 2, "min_terms": 2, "max_terms": 4},
    # The four sets below are easier still: a 135M-parameter model answers about 15-30% of them from a
    # chain of thought, where it answers under 10% of the sets above.
    "two-term-addition": {
        "min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2, "operators": ("+",),
        "allow_parentheses": False, "allow_negation": False,
    },
    "single-digit-products": {"min_digits": 1, "max_digits": 1},
    "letter-counting": {"min_words": 3, "max_words": 5},
    "small-gcd": {"min_value": 1, "max_value": 20},
}


def reasoning_tasks(dataset: str | os.PathLike[str], n: int, seed: int = 0) -> list[ReasoningTask]:
    """Return `n` reasoning tasks from a named generator, or the first `n` tasks of a JSONL file.

    A named dataset (a key of REASONING_DATASETS) gives exactly `n` tasks, the same for the same
    seed. A path ending in ".jsonl", or any existing file, is read as lines of
    {"question": ..., "answer": ...}. It gives its first `n` tasks, or all of them if it has fewer,
    and `seed` is ignored. Raises InvalidArgumentError if `n` < 1 and DataSourceError for an unknown
    name or a bad file.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidArgumentError(f"Invalid number of reasoning tasks {n!r}: it must be a positive integer.")

    name = os.fspath(dataset)
    if name in REASONING_DATASETS:
        return _generated_tasks(name, n, seed)
    if name.endswith(".jsonl") or Path(name).is_file():
        return read_task_file(Path(name), n)

    raise DataSourceError(
        f"Unknown reasoning dataset {name!r}. Use one of: {', '.join(REASONING_DATASETS)}, "
        "or the path of a JSONL file with one {\"question\": ..., \"answer\": ...} object per line."
    )


def _generated_tasks(name: str, n: int, seed: int) -> list[ReasoningTask]:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidArgumentError(f"Invalid seed {seed!r}: it must be a non-negative integer.")

    try:
        import reasoning_gym
    except ImportError as error:
        raise DataSourceError(
            f"The reasoning dataset {name!r} needs the pip package {REASONING_GYM.distribution!r}, "
            f"which failed to import ({error}). Install it with `{REASONING_GYM.install_command}`."
        ) from error

    generator = REASONING_DATASETS[name]
    entries = reasoning_gym.create_dataset(generator, size=n, seed=seed, **REASONING_CONFIGS[name])
    tasks = [
        ReasoningTask(
            id=f"{name}-{seed}-{index}",
            question=str(entry["question"]),
            answer=str(entry["answer"]),
            dataset=name,
        )
        for index, entry in enumerate(entries)
    ]
    logger.debug("Generated %d %s tasks with seed %d", len(tasks), name, seed)
    return tasks
