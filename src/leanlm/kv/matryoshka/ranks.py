"""Ranks per layer and KV head, for keys and values, and the cache budget they spend.

A budget is the fraction of the full cache's bytes kept: sum of all key and value ranks over
(L x Hkv x 2 x D). The Matryoshka rank set is {D/8, 2D/8, ..., D}.

Shapes: L layers, Hkv KV heads, D head dim.
"""

from dataclasses import dataclass

import torch

from leanlm.errors import InvalidArgumentError

RANK_STEPS = 8  # ranks are multiples of D / RANK_STEPS


@dataclass
class RankPlan:
    key_ranks: torch.Tensor  # [L, Hkv], int
    value_ranks: torch.Tensor  # [L, Hkv], int
    head_dim: int

    @property
    def budget(self) -> float:
        """Fraction of the full cache's bytes this plan keeps."""
        total = self.key_ranks.sum() + self.value_ranks.sum()
        return float(total) / (2 * self.key_ranks.numel() * self.head_dim)

    def to_lists(self) -> dict:
        return {"key_ranks": self.key_ranks.tolist(), "value_ranks": self.value_ranks.tolist()}


def check_budget(budget: float) -> None:
    if not 0 < budget <= 1:
        raise InvalidArgumentError(f"budget must be a fraction of the full cache in (0, 1], got {budget}")


def rank_set(head_dim: int) -> list[int]:
    """Return the Matryoshka ranks {D/8, ..., D}."""
    step = head_dim // RANK_STEPS
    return [step * i for i in range(1, RANK_STEPS + 1)]


def uniform_plan(layers: int, kv_heads: int, head_dim: int, budget: float) -> RankPlan:
    """Give every key and value head the same rank, round(budget x D), at least one rank step."""
    check_budget(budget)
    step = head_dim // RANK_STEPS
    rank = max(step, round(budget * head_dim))
    ranks = torch.full((layers, kv_heads), rank, dtype=torch.long)
    return RankPlan(key_ranks=ranks, value_ranks=ranks.clone(), head_dim=head_dim)


def full_plan(layers: int, kv_heads: int, head_dim: int) -> RankPlan:
    return uniform_plan(layers, kv_heads, head_dim, 1.0)
