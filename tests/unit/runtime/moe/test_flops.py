"""Expert FLOPs: the counter matches hand counts and follows the routing that ran."""

import pytest
import torch

from leanlm.errors import InvalidArgumentError
from leanlm.runtime.moe import (
    NULL_EXPERT,
    ExpertFlopsCounter,
    MoeLayerSpec,
    Routing,
    expert_flops_ratio,
    moe_runtime,
    stock_policy,
)
from tests.unit.runtime.moe.conftest import TOP_K

# H = 8, I = 5, E = 4: a routed expert costs 2*3*8*5 = 240 FLOPs per token and the router 2*8*4 = 64;
# the shared expert (Is = 3) costs 2*3*8*3 = 144 plus 2*8 = 16 for its gate, 160 in all
SHARED_LAYER = MoeLayerSpec(
    index=0,
    name="layers.0.mlp",
    block_class="Test",
    num_experts=4,
    top_k=2,
    hidden_size=8,
    expert_intermediate_size=5,
    shared_intermediate_size=3,
    has_shared_gate=True,
)
PLAIN_LAYER = MoeLayerSpec(
    index=1,
    name="layers.1.mlp",
    block_class="Test",
    num_experts=4,
    top_k=2,
    hidden_size=8,
    expert_intermediate_size=5,
)


def routing(experts: list[list[int]]) -> Routing:
    ids = torch.tensor(experts)
    return Routing(experts=ids, weights=torch.ones(ids.shape))


def test_counts_match_hand_count():
    counter = ExpertFlopsCounter()
    counter.record(SHARED_LAYER, routing([[0, 1], [2, -1], [-1, -1]]))  # 3 tokens, 3 real slots
    counter.record(PLAIN_LAYER, routing([[1, 2], [3, 0], [0, -1]]))  # 3 tokens, 5 real slots
    report = counter.report()

    assert report.tokens == 3
    assert report.layer_tokens == 6
    assert report.real_expert_slots == 8
    assert report.routed_flops == 8 * 240
    assert report.router_flops == 6 * 64
    assert report.shared_flops == 3 * 160
    assert report.total_flops == 1920 + 384 + 480
    assert report.avg_real_experts == pytest.approx(8 / 6)
    assert report.routed_flops_per_token == pytest.approx(640)
    assert report.total_flops_per_token == pytest.approx(928)
    assert report.layers[0].routed_flops == 720
    assert report.layers[1].shared_flops == 0


def test_ratio_against_full_top_k():
    baseline = ExpertFlopsCounter()
    baseline.record(SHARED_LAYER, routing([[0, 1], [2, 3], [1, 0]]))
    baseline.record(PLAIN_LAYER, routing([[1, 2], [3, 0], [0, 2]]))
    run = ExpertFlopsCounter()
    run.record(SHARED_LAYER, routing([[0, 1], [2, -1], [-1, -1]]))
    run.record(PLAIN_LAYER, routing([[1, 2], [3, 0], [0, -1]]))

    assert expert_flops_ratio(run.report(), baseline.report()) == pytest.approx(8 / 12)


def test_ratio_needs_baseline_experts():
    empty = ExpertFlopsCounter()
    empty.record(PLAIN_LAYER, routing([[NULL_EXPERT]] * 3))
    with pytest.raises(InvalidArgumentError, match="baseline ran no routed expert"):
        expert_flops_ratio(empty.report(), empty.report())


def test_model_run_counts(moe_model, padded_batch):
    """With the stock rule every token runs top-k experts; dropping the second slot halves the expert FLOPs."""
    stock = stock_policy(moe_model)

    def first_slot_only(router_logits: torch.Tensor, layer_index: int, hidden: torch.Tensor) -> Routing:
        chosen = stock(router_logits, layer_index, hidden)
        experts = chosen.experts.clone()
        experts[:, 1:] = NULL_EXPERT
        return Routing(experts=experts, weights=chosen.weights)

    baseline, halved = ExpertFlopsCounter(), ExpertFlopsCounter()
    with torch.no_grad():
        with moe_runtime(moe_model, recorder=baseline) as layers:
            moe_model(**padded_batch)
        with moe_runtime(moe_model, policy=first_slot_only, recorder=halved):
            moe_model(**padded_batch)

    tokens = padded_batch["input_ids"].numel()
    report = baseline.report()
    assert report.tokens == tokens
    assert report.avg_real_experts == TOP_K
    per_layer = [TOP_K * 2 * 3 * layer.spec.hidden_size * layer.spec.expert_intermediate_size for layer in layers]
    assert report.routed_flops == tokens * sum(per_layer)
    assert halved.report().avg_real_experts == 1
    assert expert_flops_ratio(halved.report(), report) == pytest.approx(0.5)
