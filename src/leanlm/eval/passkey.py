"""Passkey retrieval: a random number hidden at a chosen depth of a long context of real prose.

The model reads an instruction, prose from the evaluation split with one sentence stating the pass key
inserted at `depth` (0 = start, 1 = end), and a question; it is right when its greedy answer contains the
key. Accuracy is reported per (length, depth) cell, so a KV method's losses show where in the context they
happen. Chance is about 1e-5 for a five-digit key.
"""

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from leanlm.data import prose_tokens
from leanlm.errors import InvalidArgumentError
from leanlm.runtime.cache import CacheFactory, dynamic_cache
from leanlm.runtime.generate import check_context, generate
from leanlm.runtime.sampling import SamplingConfig

INSTRUCTION = (
    "There is a pass key hidden inside a lot of irrelevant text. Find it and remember it. "
    "I will ask you for the pass key at the end.\n\n"
)
NEEDLE = " The pass key is {key}. Remember it. {key} is the pass key. "
QUESTION = "\n\nWhat is the pass key? The pass key is"
ANSWER_TOKENS = 8  # enough for a five-digit key tokenised digit by digit, plus a leading space


@dataclass
class PasskeyConfig:
    lengths: tuple[int, ...] = (256, 512, 1024)  # prompt tokens
    depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    trials: int = 4  # prompts per (length, depth) cell, each with its own key and prose
    seed: int = 0
    batch_size: int = 4

    def __post_init__(self) -> None:
        if not self.lengths or any(n <= 0 for n in self.lengths):
            raise InvalidArgumentError(f"passkey lengths must be positive token counts, got {self.lengths}")
        if not self.depths or any(not 0 <= d <= 1 for d in self.depths):
            raise InvalidArgumentError(f"passkey depths must lie in [0, 1], got {self.depths}")
        if self.trials <= 0:
            raise InvalidArgumentError(f"trials must be a positive integer, got {self.trials}")
        if self.batch_size <= 0:
            raise InvalidArgumentError(f"batch_size must be a positive integer, got {self.batch_size}")


@dataclass
class PasskeyCell:
    length: int
    depth: float
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total


@dataclass
class PasskeyResult:
    cells: list[PasskeyCell] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return sum(c.correct for c in self.cells) / sum(c.total for c in self.cells)

    def accuracy_at(self, length: int) -> float:
        cells = [c for c in self.cells if c.length == length]
        return sum(c.correct for c in cells) / sum(c.total for c in cells)

    def to_dict(self) -> dict:
        cells = [asdict(c) | {"accuracy": c.accuracy} for c in self.cells]
        lengths = sorted({c.length for c in self.cells})
        return {
            "accuracy": self.accuracy,
            "by_length": {str(n): self.accuracy_at(n) for n in lengths},
            "cells": cells,
        }


@dataclass
class PasskeyPrompt:
    tokens: list[int]
    key: str
    length: int
    depth: float


def build_prompts(tokenizer: PreTrainedTokenizerBase, config: PasskeyConfig) -> list[PasskeyPrompt]:
    """Build `trials` prompts per (length, depth): each exactly `length` tokens, with its own key and prose."""
    haystack = [int(t) for doc in prose_tokens(tokenizer, "evaluation") for t in doc.tolist()]
    instruction = tokenizer(INSTRUCTION, add_special_tokens=False)["input_ids"]
    question = tokenizer(QUESTION, add_special_tokens=False)["input_ids"]
    rng = random.Random(config.seed)

    prompts = []
    for length in config.lengths:
        for depth in config.depths:
            for _ in range(config.trials):
                key = str(rng.randint(10000, 99999))
                needle = tokenizer(NEEDLE.format(key=key), add_special_tokens=False)["input_ids"]
                filler = length - len(instruction) - len(needle) - len(question)
                if filler < 0:
                    raise InvalidArgumentError(
                        f"passkey length {length} is too short for the instruction, key and question; use at least "
                        f"{length - filler} tokens"
                    )
                if filler > len(haystack):
                    raise InvalidArgumentError(
                        f"passkey length {length} needs {filler} tokens of prose but the evaluation split has "
                        f"{len(haystack)}; use shorter lengths"
                    )
                start = rng.randint(0, len(haystack) - filler)
                prose = haystack[start : start + filler]
                cut = round(depth * filler)
                tokens = instruction + prose[:cut] + needle + prose[cut:] + question
                prompts.append(PasskeyPrompt(tokens=tokens, key=key, length=length, depth=depth))
    return prompts


def passkey_accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    config: PasskeyConfig | None = None,
    *,
    cache: CacheFactory = dynamic_cache,
    progress: Callable[[int], None] | None = None,
) -> PasskeyResult:
    """Run every passkey prompt through greedy generation with a fresh cache per batch."""
    config = config or PasskeyConfig()
    prompts = build_prompts(tokenizer, config)
    check_context(model, max(config.lengths), ANSWER_TOKENS)
    sampling = SamplingConfig(max_new_tokens=ANSWER_TOKENS)

    cells: dict[tuple[int, float], PasskeyCell] = {}
    for start in range(0, len(prompts), config.batch_size):
        batch = prompts[start : start + config.batch_size]
        out = generate(model, tokenizer, [p.tokens for p in batch], sampling, cache=cache)
        for prompt, text in zip(batch, out.texts):
            cell = cells.setdefault((prompt.length, prompt.depth), PasskeyCell(prompt.length, prompt.depth, 0, 0))
            cell.correct += int(prompt.key in text)
            cell.total += 1
        if progress:
            progress(len(batch))
    return PasskeyResult(cells=list(cells.values()))
