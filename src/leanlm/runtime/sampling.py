"""Choosing the next token: greedy, or sampling with temperature, top-k and top-p.

Shapes: B batch, V vocabulary.
"""

from dataclasses import dataclass

import logging

import torch

from leanlm.errors import InvalidArgumentError

logger = logging.getLogger(__name__)


@dataclass
class SamplingConfig:
    """How many tokens to generate, how to pick each one, and when to stop.

    `temperature == 0` means greedy decoding, which matches transformers' `do_sample=False` token for token.
    """

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_k: int = 0  # 0 keeps the whole vocabulary
    top_p: float = 1.0
    seed: int | None = None
    stop_strings: tuple[str, ...] = ()
    stop_at_eos: bool = True

    def __post_init__(self) -> None:
        if self.max_new_tokens <= 0:
            raise InvalidArgumentError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens}")
        if not self.temperature >= 0:  # also rejects NaN
            raise InvalidArgumentError(f"temperature must be >= 0 (0 is greedy), got {self.temperature}")
        if self.top_k < 0:
            raise InvalidArgumentError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise InvalidArgumentError(f"top_p must be in (0, 1], got {self.top_p}")
        if any(not s for s in self.stop_strings):
            raise InvalidArgumentError("stop strings must be non-empty")
        self.stop_strings = tuple(self.stop_strings)
        if self.greedy and (self.top_k or self.top_p < 1 or self.seed is not None):
            logger.warning("top_k, top_p and seed apply only when sampling; set a temperature above 0 to sample")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def next_tokens(logits: torch.Tensor, config: SamplingConfig, generator: torch.Generator | None) -> torch.Tensor:
    """Pick one token per row from the last position's logits [B, V]; return [B]."""
    scores = logits.float()  # [B, V]
    if config.greedy:
        return scores.argmax(dim=-1)

    scores = scores / config.temperature
    if config.top_k:
        kth = scores.topk(min(config.top_k, scores.shape[-1]), dim=-1).values[:, -1:]  # [B, 1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if config.top_p < 1:
        scores = _top_p_filter(scores, config.top_p)
    probs = scores.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)


def _top_p_filter(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability mass reaches `top_p` (always at least one)."""
    sorted_scores, order = scores.sort(dim=-1, descending=True)  # [B, V]
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = cumulative - sorted_scores.softmax(dim=-1) >= top_p  # mass before this token already enough
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return scores.masked_fill(drop, float("-inf"))
