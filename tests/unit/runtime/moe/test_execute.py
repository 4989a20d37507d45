"""Grouped execution: null slots cost nothing and add nothing; only used experts run, once each."""

import pytest
import torch

from leanlm.errors import InvalidArgumentError
from leanlm.runtime.moe import NULL_EXPERT, Routing, find_moe_layers, group_by_expert, moe_block_forward
from tests.unit.runtime.moe.conftest import COMMON

NUM_TOKENS = 6


class CountingAdapter:
    """Wraps an adapter and records (expert id, token count) of every expert call."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls: list[tuple[int, int]] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def expert_forward(self, block, expert, hidden):
        self.calls.append((expert, hidden.shape[0]))
        return self.inner.expert_forward(block, expert, hidden)


def run_block(layer, hidden, policy, adapter=None) -> torch.Tensor:
    with torch.no_grad():
        return moe_block_forward(
            hidden, adapter=adapter or layer.adapter, block=layer.block, layer=layer.spec, policy=policy
        )


def fixed_policy(experts: list[list[int]]):
    """A policy that returns `experts` [N, K] with equal weights 0.5 whatever the logits."""

    def route(router_logits: torch.Tensor, layer_index: int, hidden: torch.Tensor) -> Routing:
        ids = torch.tensor(experts, dtype=torch.long)
        return Routing(experts=ids, weights=torch.full(ids.shape, 0.5))

    return route


@pytest.fixture
def hidden() -> torch.Tensor:
    generator = torch.Generator().manual_seed(4)
    return torch.randn(2, NUM_TOKENS // 2, COMMON["hidden_size"], generator=generator)  # [B, T, H]


def test_null_tokens_get_zero_routed_output(moe_model, hidden):
    """Tokens 0 and 4 have only null slots: their routed output is exactly zero, plus any shared expert."""
    layer = find_moe_layers(moe_model)[0]
    policy = fixed_policy([[-1, -1], [0, 1], [2, -1], [3, 0], [-1, -1], [1, 2]])
    output = run_block(layer, hidden, policy).reshape(NUM_TOKENS, -1)  # [N, H]

    flat = hidden.reshape(NUM_TOKENS, -1)
    with torch.no_grad():
        shared = layer.adapter.shared_expert_forward(layer.block, flat)
    expected_null_rows = torch.zeros(2, flat.shape[1]) if shared is None else shared[[0, 4]]
    assert torch.equal(output[[0, 4]], expected_null_rows)
    assert (output[[1, 2, 3, 5]] != expected_null_rows[0]).any(dim=1).all()


def test_only_used_experts_run(moe_model, hidden):
    layer = find_moe_layers(moe_model)[0]
    counting = CountingAdapter(layer.adapter)
    policy = fixed_policy([[2, -1], [0, 2], [-1, -1], [2, 0], [-1, 2], [0, -1]])
    run_block(layer, hidden, policy, adapter=counting)

    assert counting.calls == [(0, 3), (2, 4)]


def test_all_null_runs_no_expert(moe_model, hidden):
    layer = find_moe_layers(moe_model)[0]
    counting = CountingAdapter(layer.adapter)
    policy = fixed_policy([[NULL_EXPERT]] * NUM_TOKENS)
    output = run_block(layer, hidden, policy, adapter=counting)

    assert counting.calls == []
    if layer.spec.shared_intermediate_size == 0:
        assert torch.equal(output, torch.zeros_like(hidden))


def test_group_by_expert_orders_pairs():
    experts = torch.tensor([[3, -1], [0, 3], [-1, -1], [3, 0]])  # [N, K]
    groups = group_by_expert(experts, num_experts=5)

    assert groups.experts == [0, 3]
    assert groups.counts == [2, 3]
    assert groups.tokens.tolist() == [1, 3, 0, 1, 3]
    assert groups.slots.tolist() == [0, 1, 0, 1, 0]


def test_group_by_expert_all_null():
    groups = group_by_expert(torch.full((3, 2), NULL_EXPERT), num_experts=4)

    assert groups.experts == []
    assert groups.tokens.numel() == 0


@pytest.mark.parametrize(
    ("experts", "message"),
    [
        ([[0, 4]] * NUM_TOKENS, "expert id 4"),
        ([[0, -2]] * NUM_TOKENS, "expert id -2"),
        ([[0, 1]] * (NUM_TOKENS - 1), "5 rows for 6 tokens"),
    ],
)
def test_invalid_policy_output_raises(moe_model, hidden, experts, message):
    layer = find_moe_layers(moe_model)[0]
    with pytest.raises(InvalidArgumentError, match=message):
        run_block(layer, hidden, fixed_policy(experts))


def test_routing_rejects_bad_tensors():
    with pytest.raises(InvalidArgumentError, match="2-D long tensor"):
        Routing(experts=torch.zeros(3, 2, dtype=torch.int32), weights=torch.zeros(3, 2))
    with pytest.raises(InvalidArgumentError, match="shaped like the experts"):
        Routing(experts=torch.zeros(3, 2, dtype=torch.long), weights=torch.zeros(3, 3))
