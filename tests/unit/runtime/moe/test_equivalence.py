"""The runtime with the stock routing reproduces each block type's transformers forward."""

import pytest
import torch

from leanlm.runtime.moe import Routing, find_moe_layers, moe_runtime, stock_policy
from tests.unit.runtime.moe.conftest import KINDS, NUM_EXPERTS, build_moe_model

TOLERANCE = 1e-5  # float32 logits; grouped and per-expert matmuls differ by about 2e-6 here


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def test_default_policy_matches_stock(moe_model, padded_batch):
    expected = logits(moe_model, padded_batch)
    with moe_runtime(moe_model):
        actual = logits(moe_model, padded_batch)
    torch.testing.assert_close(actual, expected, atol=TOLERANCE, rtol=0)


def test_stock_policy_matches_stock(moe_model, padded_batch):
    expected = logits(moe_model, padded_batch)
    with moe_runtime(moe_model, policy=stock_policy(moe_model)):
        actual = logits(moe_model, padded_batch)
    torch.testing.assert_close(actual, expected, atol=TOLERANCE, rtol=0)


def test_other_routing_changes_logits(moe_model, padded_batch):
    """Guards the tests above: picking the lowest-scored experts moves the logits far beyond the tolerance."""
    expected = logits(moe_model, padded_batch)
    stock = stock_policy(moe_model)

    def lowest_experts(router_logits: torch.Tensor, layer_index: int, hidden: torch.Tensor) -> Routing:
        return stock(-router_logits, layer_index, hidden)

    with moe_runtime(moe_model, policy=lowest_experts):
        actual = logits(moe_model, padded_batch)
    assert (actual - expected).abs().max() > 100 * TOLERANCE


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_stock_routing_equals_router_output(moe_model, dtype):
    """Each adapter's rule gives bit-identical ids and weights (values and dtype) to the block's own router."""
    generator = torch.Generator().manual_seed(2)
    for layer in find_moe_layers(moe_model):
        router = layer.adapter.router(layer.block).to(dtype)
        hidden = torch.randn(11, layer.spec.hidden_size, generator=generator).to(dtype)  # [N, H]
        with torch.no_grad():
            router_logits, stock_weights, stock_experts = router(hidden)
            routing = layer.adapter.stock_routing(layer.block, router_logits)
        router.float()

        assert torch.equal(routing.experts, stock_experts)
        assert routing.weights.dtype == stock_weights.dtype
        assert torch.equal(routing.weights, stock_weights)


def test_more_slots_than_top_k(moe_model, padded_batch):
    """A policy using every expert (K = E > top-k) equals a dense mixture computed from the fused weights."""

    def every_expert(router_logits: torch.Tensor, layer_index: int, hidden: torch.Tensor) -> Routing:
        N, E = router_logits.shape
        experts = torch.arange(E).expand(N, E).contiguous()  # [N, E]
        return Routing(experts=experts, weights=torch.softmax(router_logits.float(), dim=-1))

    for layer in find_moe_layers(moe_model):
        hidden = torch.randn(1, 5, layer.spec.hidden_size, generator=torch.Generator().manual_seed(3))
        with torch.no_grad(), moe_runtime(moe_model, policy=every_expert):
            actual = layer.block(hidden)

            flat = hidden.reshape(-1, layer.spec.hidden_size)  # [N, H]
            weights = torch.softmax(layer.adapter.router_logits(layer.block, flat).float(), dim=-1)  # [N, E]
            expected = sum(weights[:, [e]] * dense_swiglu(layer.block.experts, e, flat) for e in range(NUM_EXPERTS))
            shared = layer.adapter.shared_expert_forward(layer.block, flat)
            if shared is not None:
                expected = expected + shared

        torch.testing.assert_close(actual.reshape(-1, layer.spec.hidden_size), expected, atol=1e-6, rtol=1e-5)


def dense_swiglu(experts: torch.nn.Module, expert: int, hidden: torch.Tensor) -> torch.Tensor:
    """Expert `expert` of the fused [E, 2I, H] / [E, H, I] weights, written out with plain matmuls."""
    intermediate = experts.down_proj.shape[2]
    gate_weight = experts.gate_up_proj[expert, :intermediate]  # [I, H]
    up_weight = experts.gate_up_proj[expert, intermediate:]  # [I, H]
    inner = torch.nn.functional.silu(hidden @ gate_weight.T) * (hidden @ up_weight.T)  # [N, I]
    return inner @ experts.down_proj[expert].T  # [N, H]


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_stock(kind, padded_batch):
    """Training through the runtime gives the stock gradients for the router and the expert weights."""
    model = build_moe_model(kind).train()
    labels = padded_batch["input_ids"]

    def gradients() -> dict[str, torch.Tensor]:
        model.zero_grad()
        model(**padded_batch, labels=labels).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    expected = gradients()
    with moe_runtime(model):
        actual = gradients()

    assert actual.keys() == expected.keys()
    assert any("gate_up_proj" in name for name in actual)
    for name, grad in expected.items():
        torch.testing.assert_close(actual[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_router_logits_still_recorded(moe_model, padded_batch):
    """transformers' auxiliary loss reads the router logits through hooks on the router, which still fire."""
    with torch.no_grad():
        expected = moe_model(**padded_batch, output_router_logits=True)
        with moe_runtime(moe_model):
            actual = moe_model(**padded_batch, output_router_logits=True)

    assert len(actual.router_logits) == len(expected.router_logits)
    for actual_logits, expected_logits in zip(actual.router_logits, expected.router_logits):
        torch.testing.assert_close(actual_logits, expected_logits, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(actual.aux_loss, expected.aux_loss, atol=TOLERANCE, rtol=0)
