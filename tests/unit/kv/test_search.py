"""Rank search: batched trial scoring and the greedy descent under a budget."""

import torch

from leanlm.kv.matryoshka.projections import MatryoshkaProjections
from leanlm.kv.matryoshka.ranks import RankPlan, full_plan, uniform_plan
from leanlm.kv.matryoshka.search import KLScorer, search_ranks


def random_plans(count: int, seed: int = 0) -> list[RankPlan]:
    generator = torch.Generator().manual_seed(seed)
    return [
        RankPlan(2 * torch.randint(1, 9, (2, 2), generator=generator), 2 * torch.randint(1, 9, (2, 2), generator=generator), 16)
        for _ in range(count)
    ]


def test_full_plan_scores_zero(model, pca, windows):
    scorer = KLScorer(model, MatryoshkaProjections(pca), windows[:1])
    assert abs(scorer(full_plan(2, 2, 16))) < 1e-6


def test_batched_scores_match_single(model, pca, windows):
    scorer = KLScorer(model, MatryoshkaProjections(pca), windows[:2], batch=3)
    plans = random_plans(5)
    batched = scorer.many(plans)
    single = [scorer(plan) for plan in plans]
    assert batched == [pytest_approx(s) for s in single]


def test_lower_budget_scores_higher(model, pca, windows):
    scorer = KLScorer(model, MatryoshkaProjections(pca), windows[:1])
    assert scorer(uniform_plan(2, 2, 16, 0.25)) > scorer(uniform_plan(2, 2, 16, 0.75))


def test_search_reaches_each_budget(model, pca, windows):
    scorer = KLScorer(model, MatryoshkaProjections(pca), windows[:1])
    plans = search_ranks(scorer, 2, 2, 16, [0.5, 0.75], rounds=3)
    assert plans[0.75].budget == 0.75
    assert plans[0.5].budget == 0.5
    assert bool((plans[0.5].key_ranks <= plans[0.75].key_ranks).all())
    assert bool((plans[0.5].value_ranks <= plans[0.75].value_ranks).all())


def test_search_beats_uniform(model, pca, windows):
    scorer = KLScorer(model, MatryoshkaProjections(pca), windows[:1])
    searched = search_ranks(scorer, 2, 2, 16, [0.5], rounds=4)[0.5]
    assert scorer(searched) <= scorer(uniform_plan(2, 2, 16, 0.5)) + 1e-6


def pytest_approx(value):
    import pytest

    return pytest.approx(value, rel=1e-4, abs=1e-7)
