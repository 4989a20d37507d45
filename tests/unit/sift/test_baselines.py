"""Zero-shot chain of thought and self-consistency with a scripted backend."""

import pytest

from leanlm.errors import InvalidArgumentError
from leanlm.runtime.backends import ChatBackend, ChatReply
from leanlm.sift.baselines import majority, samples_for_budget, self_consistency, zero_shot_cot
from leanlm.sift.pipeline import SiftItem


class CyclingBackend(ChatBackend):
    """Return the scripted replies in turn, each with 5 input and 2 output tokens."""

    def __init__(self, replies: list[str]):
        self.replies, self.requests = replies, []

    def chat(self, requests):
        self.requests.extend(requests)
        return [ChatReply(self.replies[i % len(self.replies)], 5, 2, "stop") for i in range(len(requests))]


ITEMS = [SiftItem("a", "Q1", "1/2"), SiftItem("b", "Q2", "3")]


def test_zero_shot_is_one_greedy_chain():
    backend = CyclingBackend(["\\boxed{0.5}", "\\boxed{4}"])

    records = zero_shot_cot(backend, ITEMS)

    assert [r.answer for r in records] == ["0.5", "4"]
    assert [r.correct for r in records] == [True, False]
    assert [(r.input_tokens, r.output_tokens) for r in records] == [(5, 2), (5, 2)]
    assert all(request.temperature == 0.0 for request in backend.requests)


def test_self_consistency_votes_per_item():
    # item a: 1/2, 0.5, 7 -> 1/2 wins; item b: 3, 4, 4 -> 4 wins
    backend = CyclingBackend(["\\boxed{1/2}", "\\boxed{0.5}", "\\boxed{7}", "\\boxed{3}", "\\boxed{4}", "\\boxed{4}"])

    records = self_consistency(backend, ITEMS, samples=3)

    assert [r.answer for r in records] == ["1/2", "4"]
    assert [r.correct for r in records] == [True, False]
    assert records[0].samples == ["1/2", "0.5", "7"]
    assert records[0].input_tokens == 15
    assert records[0].output_tokens == 6


@pytest.mark.parametrize(
    ("answers", "expected"),
    [(["2", "3", "3"], "3"), (["2", "3"], "2"), ([None, None, "5"], "5"), ([None], None), (["1/2", "0.5", "2"], "1/2")],
)
def test_majority(answers, expected):
    assert majority(answers) == expected


def test_samples_for_budget():
    assert samples_for_budget(1000, 240) == 4
    assert samples_for_budget(100, 240) == 1
    with pytest.raises(InvalidArgumentError):
        samples_for_budget(100, 0)


def test_self_consistency_rejects_zero_samples():
    with pytest.raises(InvalidArgumentError, match="samples"):
        self_consistency(CyclingBackend(["x"]), ITEMS, samples=0)
