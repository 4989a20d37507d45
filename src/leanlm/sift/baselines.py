"""The baselines SIFT is compared with: zero-shot chain of thought, and self-consistency (majority vote over
sampled chains of thought) given about the same tokens per item as SIFT used."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from leanlm.errors import InvalidArgumentError
from leanlm.runtime.backends import ChatBackend, ChatRequest
from leanlm.sift import prompts
from leanlm.sift.answers import answers_equal, extract_answer
from leanlm.sift.pipeline import SiftItem

logger = logging.getLogger(__name__)


@dataclass
class BaselineRecord:
    id: str
    answer: str | None
    correct: bool | None
    samples: list[str | None]  # the answer of each chain of thought
    input_tokens: int
    output_tokens: int


def zero_shot_cot(backend: ChatBackend, items: Sequence[SiftItem], max_new_tokens: int = 512) -> list[BaselineRecord]:
    """Answer each item from one greedy chain of thought."""
    return self_consistency(backend, items, samples=1, max_new_tokens=max_new_tokens, temperature=0.0)


def self_consistency(
    backend: ChatBackend,
    items: Sequence[SiftItem],
    samples: int,
    max_new_tokens: int = 512,
    temperature: float = 0.7,
) -> list[BaselineRecord]:
    """Sample `samples` chains of thought per item and answer with the most common answer.

    Answers count as the same when `answers_equal` says so; a tie goes to the answer seen first.
    """
    if samples < 1:
        raise InvalidArgumentError(f"samples must be a positive integer, got {samples}")
    requests = [
        ChatRequest(prompts.ZERO_SHOT_COT.messages(question=item.question), max_new_tokens=max_new_tokens, temperature=temperature)
        for item in items
        for _ in range(samples)
    ]
    replies = backend.chat(requests)

    records = []
    for index, item in enumerate(items):
        mine = replies[index * samples : (index + 1) * samples]
        answers = [extract_answer(reply.text) for reply in mine]
        answer = majority(answers)
        records.append(
            BaselineRecord(
                id=item.id,
                answer=answer,
                correct=None if item.gold is None else answers_equal(item.gold, answer),
                samples=answers,
                input_tokens=sum(reply.input_tokens for reply in mine),
                output_tokens=sum(reply.output_tokens for reply in mine),
            )
        )
    return records


def majority(answers: Sequence[str | None]) -> str | None:
    """Return the most common answer (None answers never win), the first one seen on a tie."""
    groups: list[list[str]] = []
    for answer in answers:
        if answer is None:
            continue
        group = next((g for g in groups if answers_equal(g[0], answer)), None)
        if group is None:
            groups.append([answer])
        else:
            group.append(answer)
    if not groups:
        return None
    return max(groups, key=len)[0]  # max keeps the first of equally long groups


def samples_for_budget(sift_tokens_per_item: float, one_chain_tokens: float) -> int:
    """Return how many chains of thought fit in SIFT's tokens per item (at least one)."""
    if one_chain_tokens <= 0:
        raise InvalidArgumentError(f"tokens of one chain of thought must be positive, got {one_chain_tokens}")
    return max(1, round(sift_tokens_per_item / one_chain_tokens))
