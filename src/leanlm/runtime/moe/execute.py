"""Grouped execution of an MoE block: route, group (token, slot) pairs by expert, run each used expert once.

Only experts that received at least one real slot run, each on exactly the tokens routed to it, so the cost
follows the routing. A null slot (expert id -1) is never computed, and a token whose slots are all null gets
exactly zero from the routed experts. A shared expert, where the block has one, still runs on every token.

Shapes: B batch, T tokens per row, N = B x T tokens, H model dim, E experts, K slots per token,
P real (token, slot) pairs.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from leanlm.runtime.moe.adapters import MoeBlockAdapter
from leanlm.runtime.moe.routing import (
    NULL_EXPERT,
    MoeLayerSpec,
    Routing,
    RoutingObserver,
    RoutingPolicy,
    check_routing,
)


@dataclass(frozen=True, eq=False)  # tensor fields: compare them with torch.equal
class ExpertGroups:
    """The real (token, slot) pairs of a routing, sorted by expert id (stable, so by token within an expert)."""

    experts: list[int]  # ids of the experts used, ascending
    counts: list[int]  # number of pairs of each used expert, all > 0
    tokens: torch.Tensor  # [P] long, token index of each pair
    slots: torch.Tensor  # [P] long, slot index of each pair


def group_by_expert(experts: torch.Tensor, num_experts: int) -> ExpertGroups:
    """Group the real slots of expert ids [N, K] by expert, leaving out null slots.

    Reads the used experts and their counts back to the host, because the loop over experts needs them.
    """
    slots_per_token = experts.shape[1]
    flat = experts.reshape(-1)  # [N*K]
    pairs = (flat != NULL_EXPERT).nonzero().squeeze(1)  # [P] flat index of each real slot
    pairs = pairs[torch.argsort(flat[pairs], stable=True)]  # [P] grouped by expert

    counts = torch.bincount(flat[pairs], minlength=num_experts)  # [E]
    used = counts.nonzero().squeeze(1)
    return ExpertGroups(
        experts=used.tolist(),
        counts=counts[used].tolist(),
        tokens=pairs // slots_per_token,
        slots=pairs % slots_per_token,
    )


def run_routed_experts(
    adapter: MoeBlockAdapter, block: nn.Module, hidden: torch.Tensor, routing: Routing, num_experts: int
) -> torch.Tensor:
    """Return the weighted sum [N, H] of the routed experts' outputs on hidden states [N, H].

    Each used expert runs once on its gathered tokens. Its outputs are scaled by the slot weights and
    scatter-added into a zero tensor, so a token with only null slots stays exactly zero.
    """
    output = torch.zeros_like(hidden)  # [N, H]
    groups = group_by_expert(routing.experts, num_experts)
    if not groups.experts:
        return output

    # one call per used expert, on the tokens routed to it
    token_groups = torch.split(groups.tokens, groups.counts)
    expert_outputs = [
        adapter.expert_forward(block, expert, hidden[tokens]) for expert, tokens in zip(groups.experts, token_groups)
    ]

    # scale by the slot weights, then add into each token's row
    weights = routing.weights[groups.tokens, groups.slots]  # [P]
    weighted = torch.cat(expert_outputs) * weights[:, None]  # [P, H]
    return output.index_add_(0, groups.tokens, weighted.to(output.dtype))


def moe_block_forward(
    hidden_states: torch.Tensor,
    *,
    adapter: MoeBlockAdapter,
    block: nn.Module,
    layer: MoeLayerSpec,
    policy: RoutingPolicy | None,
    observers: Sequence[RoutingObserver] = (),
) -> torch.Tensor:
    """Run `block` on hidden states [B, T, H] with `policy` choosing the experts, and return [B, T, H].

    Without a policy the block's stock rule routes. Every observer is shown the routing before the experts run.
    """
    B, T, H = hidden_states.shape
    hidden = adapter.prepare_hidden(block, hidden_states.reshape(B * T, H))  # [N, H]

    # route
    logits = adapter.router_logits(block, hidden)  # [N, E]
    if policy is None:
        routing = adapter.stock_routing(block, logits)
    else:
        routing = policy(logits, layer.index, hidden)
        check_routing(routing, num_tokens=B * T, num_experts=layer.num_experts, device=hidden.device)
    for observer in observers:
        observer.record(layer, routing)

    # routed experts, then the shared expert on every token
    output = run_routed_experts(adapter, block, hidden, routing, layer.num_experts)  # [N, H]
    shared = adapter.shared_expert_forward(block, hidden)
    if shared is not None:
        output = output + shared
    return output.reshape(B, T, H)
