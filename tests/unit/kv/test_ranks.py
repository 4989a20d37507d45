"""Rank plans: the budget they spend, the budgets `uniform_plan` accepts, and the Matryoshka rank set."""

import pytest
import torch

from leanlm.errors import InvalidArgumentError
from leanlm.kv.matryoshka.ranks import RankPlan, check_budget, full_plan, rank_set, uniform_plan


@pytest.mark.parametrize(("budget", "rank"), [(0.25, 4), (0.5, 8), (1.0, 16)])
def test_uniform_budget_is_rank_over_dim(budget, rank):
    plan = uniform_plan(layers=2, kv_heads=2, head_dim=16, budget=budget)

    assert bool((plan.key_ranks == rank).all())
    assert bool((plan.value_ranks == rank).all())
    assert plan.budget == pytest.approx(rank / 16)


def test_uniform_rank_at_least_one_step():
    plan = uniform_plan(layers=1, kv_heads=2, head_dim=64, budget=0.01)

    assert bool((plan.key_ranks == 8).all())
    assert plan.budget == pytest.approx(8 / 64)


def test_ragged_budget():
    plan = RankPlan(key_ranks=torch.tensor([[4, 8], [12, 16]]), value_ranks=torch.tensor([[16, 4], [8, 12]]), head_dim=16)

    assert plan.budget == pytest.approx(80 / (2 * 4 * 16))


def test_full_plan_keeps_everything():
    plan = full_plan(layers=2, kv_heads=2, head_dim=16)

    assert plan.budget == 1.0
    assert bool((plan.value_ranks == 16).all())


@pytest.mark.parametrize("budget", [0, -0.1, 1.5])
def test_uniform_rejects_budget(budget):
    with pytest.raises(InvalidArgumentError, match=f"got {budget}$"):
        uniform_plan(layers=2, kv_heads=2, head_dim=16, budget=budget)


def test_check_budget_rejects_nan():
    with pytest.raises(InvalidArgumentError, match="got nan"):
        check_budget(float("nan"))


def test_rank_set_of_64():
    assert rank_set(64) == [8, 16, 24, 32, 40, 48, 56, 64]


def test_plan_to_lists():
    plan = uniform_plan(layers=2, kv_heads=1, head_dim=16, budget=0.5)

    assert plan.to_lists() == {"key_ranks": [[8], [8]], "value_ranks": [[8], [8]]}
