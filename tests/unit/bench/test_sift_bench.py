"""`bench_sift` with a scripted backend: screening picks the sets, rows per method, and a rerun redoes nothing."""

from contextlib import contextmanager

import pytest

from leanlm.bench.sift import METHODS, SiftBenchConfig, bench_sift
from leanlm.data import reasoning_tasks
from leanlm.errors import InvalidArgumentError
from leanlm.runtime.backends import ChatBackend, ChatReply

SOLVED, UNSOLVED = "single-digit-products", "small-gcd"


@contextmanager
def no_progress(description, total):
    yield lambda n=1: None


class KnowsOneSet(ChatBackend):
    """Answers the items of one set correctly (any seed) and every other item with -1; stickers repeat the question."""

    def __init__(self, solved: str, seeds=(0, 1), n=8):
        self.gold = {task.question: task.answer for seed in seeds for task in reasoning_tasks(solved, n, seed)}
        self.calls = 0

    def chat(self, requests):
        self.calls += len(requests)
        return [self._reply(request.messages[-1]["content"]) for request in requests]

    def _reply(self, text: str) -> ChatReply:
        question = next((q for q in self.gold if q in text), None)
        answer = self.gold.get(question, "-1")
        sticker = f"<sticker>1. {question or 'unknown'}\nQuestion: what is asked?</sticker>"
        return ChatReply(f"{sticker}\nSo the answer is \\boxed{{{answer}}}.", 11, 5, "stop")


class FailingBackend(ChatBackend):
    def chat(self, requests):
        raise AssertionError("a rerun must not call the model")


def config(tmp_path, **overrides):
    values = dict(work_dir=tmp_path, candidates=(SOLVED, UNSOLVED), screen_items=4, n=3)
    return SiftBenchConfig(**(values | overrides))


def test_screening_chooses_sets_above_threshold(tmp_path):
    payload = bench_sift(KnowsOneSet(SOLVED), config(tmp_path), no_progress)

    screening = {row["dataset"]: row for row in payload["screening"]}
    assert screening[SOLVED]["zero_shot_accuracy"] == 1.0
    assert screening[SOLVED]["chosen"]
    assert screening[UNSOLVED]["zero_shot_accuracy"] == 0.0
    assert not screening[UNSOLVED]["chosen"]
    assert [(row["dataset"], row["method"]) for row in payload["rows"]] == [(SOLVED, m) for m in METHODS]


def test_rows_carry_accuracy_tokens_and_n(tmp_path):
    payload = bench_sift(KnowsOneSet(SOLVED), config(tmp_path), no_progress)

    for row in payload["rows"]:
        assert row["accuracy"] == 1.0
        assert row["n"] == 3
        assert row["tokens_per_item"] > 0
    rows = {row["method"]: row for row in payload["rows"]}
    # every item agrees at stage 1 (sticker + two predictions), so SIFT stops there: 3 calls of 16 tokens
    assert rows["sift_stage1"]["tokens_per_item"] == rows["sift_stage3"]["tokens_per_item"] == 3 * 16
    assert rows["zero_shot_cot"]["tokens_per_item"] == 16
    assert payload["datasets"][SOLVED]["self_consistency_samples"] == 3
    assert payload["datasets"][SOLVED]["sticker_format_rate"] == 1.0


def test_rerun_reuses_every_finished_stage(tmp_path):
    first = bench_sift(KnowsOneSet(SOLVED), config(tmp_path), no_progress)
    second = bench_sift(FailingBackend(), config(tmp_path), no_progress)

    assert second["rows"] == first["rows"]
    assert second["screening"] == first["screening"]


def test_named_datasets_skip_the_threshold(tmp_path):
    payload = bench_sift(KnowsOneSet(SOLVED), config(tmp_path, datasets=(UNSOLVED,)), no_progress)

    assert {row["dataset"] for row in payload["rows"]} == {UNSOLVED}
    assert all(row["accuracy"] == 0.0 for row in payload["rows"])


@pytest.mark.parametrize("overrides", [{"datasets": ("no-such-set",)}, {"candidates": ("gsm8k",)}, {"n": 0}, {"threshold": 1.0}])
def test_bad_config_is_rejected(tmp_path, overrides):
    with pytest.raises(InvalidArgumentError):
        config(tmp_path, **overrides)
