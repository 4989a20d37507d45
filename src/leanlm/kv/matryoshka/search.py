"""Rank search under a budget: greedy lowering of key and value ranks, scored by KL to the full cache.

Every round tries lowering each (layer, KV head, keys or values) entry by one rank step on its own,
scores each trial by KL(full-cache model || projected model) on calibration text, and lowers the
cheapest entries together. Lowering several entries per round keeps the search to a few rounds of one
forward pass per entry. Keys and values compete for the same budget, so their split comes out of the
search rather than being fixed. One descent visits every budget asked for, largest first.

Shapes: N windows, T tokens, V vocabulary, L layers, Hkv KV heads.
"""

import logging
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from leanlm.kv.matryoshka.positions import offset_positions
from leanlm.kv.matryoshka.projections import MatryoshkaProjections
from leanlm.kv.matryoshka.ranks import RANK_STEPS, RankPlan, check_budget, full_plan
from leanlm.runtime.kv_attention import kv_attention_enabled
from leanlm.runtime.projected_cache import HeadProjection, ProjectedCache

logger = logging.getLogger(__name__)

Entry = tuple[str, int, int]  # ("key" or "value", layer, KV head)


class KLScorer:
    """Scorer of rank plans: mean per-token KL(full-cache model || projected model) on windows [N, T].

    `many` scores several plans in one forward pass, one plan per batch row, through row masks.
    """

    def __init__(self, model: PreTrainedModel, projections: MatryoshkaProjections, windows: torch.Tensor, batch: int = 16):
        self.model, self.projections, self.windows, self.batch = model, projections, windows, batch
        generator = torch.Generator().manual_seed(0)
        self.positions = [offset_positions(model, windows.shape[1], generator) for _ in range(windows.shape[0])]
        with torch.inference_mode():
            self.teacher = [
                F.log_softmax(model(input_ids=w, position_ids=p, use_cache=False).logits.float(), dim=-1)
                for w, p in zip(windows.split(1), self.positions)
            ]
            self.bases = projections.bases()

    def __call__(self, plan: RankPlan) -> float:
        return self.many([plan])[0]

    def many(self, plans: list[RankPlan]) -> list[float]:
        scores = []
        for start in range(0, len(plans), self.batch):
            scores.extend(self._score_batch(plans[start : start + self.batch]))
        return scores

    def _score_batch(self, plans: list[RankPlan]) -> list[float]:
        heads = _trial_projections(self.projections, self.bases, plans)
        totals = torch.zeros(len(plans))
        with torch.inference_mode(), kv_attention_enabled(self.model):
            for window, positions, target in zip(self.windows.split(1), self.positions, self.teacher):
                rows = window.expand(len(plans), -1)  # [K, T], one plan per row
                rows_positions = positions.expand(len(plans), -1)
                logits = self.model(
                    input_ids=rows, position_ids=rows_positions, cache=ProjectedCache(heads), use_cache=True
                ).logits  # [K, T, V]
                student = F.log_softmax(logits.float(), dim=-1)
                kl = (target.exp() * (target - student)).sum(dim=-1).mean(dim=-1)  # [K], per token
                totals += kl
        return (totals / self.windows.shape[0]).tolist()


def _trial_projections(projections: MatryoshkaProjections, bases, plans: list[RankPlan]) -> list[HeadProjection]:
    """Cut each head's basis to the widest rank among `plans` and mask each row to its own plan's rank."""
    key_basis, value_basis = bases
    L, H, _ = projections.shape
    key_ranks = torch.stack([p.key_ranks for p in plans])  # [K, L, Hkv]
    value_ranks = torch.stack([p.value_ranks for p in plans])
    layers = []
    for layer in range(L):
        key_cut = [int(key_ranks[:, layer, h].max()) for h in range(H)]
        value_cut = [int(value_ranks[:, layer, h].max()) for h in range(H)]
        layers.append(
            HeadProjection(
                key_bases=[key_basis[layer, h, :, : key_cut[h]] for h in range(H)],
                key_means=projections.key_mean[layer],
                value_bases=[value_basis[layer, h, :, : value_cut[h]] for h in range(H)],
                value_means=projections.value_mean[layer],
                key_masks=[torch.arange(key_cut[h]) < key_ranks[:, layer, h, None] for h in range(H)],  # [K, R_K]
                value_masks=[torch.arange(value_cut[h]) < value_ranks[:, layer, h, None] for h in range(H)],
            )
        )
    return layers


def search_ranks(
    score: KLScorer,
    layers: int,
    kv_heads: int,
    head_dim: int,
    budgets: list[float],
    *,
    rounds: int = 8,
    progress: Callable[[int], None] | None = None,
) -> dict[float, RankPlan]:
    """Lower ranks greedily from the full plan; return the plan reached at each budget."""
    for budget in budgets:
        check_budget(budget)
    step = head_dim // RANK_STEPS
    step_budget = step / (2 * layers * kv_heads * head_dim)  # budget freed by one rank step
    plan = full_plan(layers, kv_heads, head_dim)
    targets = sorted(budgets, reverse=True)
    total_steps = round((1 - targets[-1]) / step_budget)
    per_round = max(1, math.ceil(total_steps / rounds))

    plans: dict[float, RankPlan] = {}
    for target in targets:
        while (needed := round((plan.budget - target) / step_budget)) > 0:
            costs = _trial_costs(score, plan, step)
            chosen = sorted(costs, key=costs.get)[: min(per_round, needed)]
            plan = _lowered(plan, chosen, step)
            logger.info("rank search: budget %.3f, KL %.4f", plan.budget, score(plan))
            if progress:
                progress(len(chosen))
        plans[target] = _copy(plan)
    return plans


def _trial_costs(score: KLScorer, plan: RankPlan, step: int) -> dict[Entry, float]:
    entries = [
        (kind, layer, head)
        for kind, ranks in (("key", plan.key_ranks), ("value", plan.value_ranks))
        for layer, head in (ranks > step).nonzero().tolist()
    ]
    trials = score.many([_lowered(plan, [entry], step) for entry in entries])
    return dict(zip(entries, trials))


def _lowered(plan: RankPlan, entries: list[Entry], step: int) -> RankPlan:
    lowered = _copy(plan)
    for kind, layer, head in entries:
        ranks = lowered.key_ranks if kind == "key" else lowered.value_ranks
        ranks[layer, head] -= step
    return lowered


def _copy(plan: RankPlan) -> RankPlan:
    return RankPlan(plan.key_ranks.clone(), plan.value_ranks.clone(), plan.head_dim)
