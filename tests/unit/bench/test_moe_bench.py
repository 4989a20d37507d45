"""The MoE benchmark's rows on tiny random stock models: consistent FLOPs ratios and the stock top-k's perplexity."""

from contextlib import contextmanager

import pytest

from leanlm.bench.moe import MoeBenchConfig, tiny_rows
from leanlm.errors import InvalidArgumentError


@contextmanager
def no_progress(description, total):
    yield lambda n=1: None


@pytest.fixture(scope="module", params=["mixtral", "qwen3_moe"])
def rows(request):
    return {row.method: row for row in tiny_rows(request.param, no_progress, adamoe_steps=10)}


def test_stock_top_k_through_the_runtime_matches_the_stock_forward(rows):
    assert rows["top-2"].ppl == pytest.approx(rows["stock"].ppl, rel=1e-5)


def test_top_k_flops_follow_k(rows):
    for k in (1, 2, 4):
        assert rows[f"top-{k}"].avg_real_experts == k
        assert rows[f"top-{k}"].expert_flops_ratio == pytest.approx(k / 2)


def test_adamoe_row_names_its_base_and_counts_real_experts(rows):
    adamoe = rows["adamoe-target-1.5"]
    histogram = adamoe.real_experts_histogram

    assert adamoe.base == "top-2"
    assert adamoe.expert_flops_ratio == pytest.approx(adamoe.avg_real_experts / 2)
    assert sum(i * count for i, count in enumerate(histogram)) / sum(histogram) == pytest.approx(adamoe.avg_real_experts)
    assert "base" in adamoe.to_dict()
    assert "base" not in rows["top-2"].to_dict()


def test_base_k_must_be_measured():
    with pytest.raises(InvalidArgumentError, match="base-k"):
        MoeBenchConfig(top_ks=(2, 8), base_k=4)
