"""Routing decisions of an MoE layer, the policy hook that makes them, and the stock top-k rules.

A routing gives every token K slots, each an expert id and a weight. An expert id of -1 is a null expert:
the slot contributes nothing and nothing is computed for it. K need not equal the model's top-k.

Shapes: N tokens (B x T flattened), E experts, K slots per token.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from leanlm.errors import InvalidArgumentError

NULL_EXPERT = -1  # expert id of a slot that runs no expert


@dataclass(frozen=True, eq=False)  # tensor fields: compare them with torch.equal
class Routing:
    """Expert ids and weights of every token's slots in one MoE layer."""

    experts: torch.Tensor  # [N, K] long, NULL_EXPERT for a null slot
    weights: torch.Tensor  # [N, K] float, the scale of each slot's expert output

    def __post_init__(self) -> None:
        if self.experts.dim() != 2 or self.experts.dtype != torch.long:
            raise InvalidArgumentError(
                f"routing experts must be a 2-D long tensor [N, K], got {self.experts.dtype} of shape "
                f"{tuple(self.experts.shape)}"
            )
        if self.weights.shape != self.experts.shape or not self.weights.is_floating_point():
            raise InvalidArgumentError(
                f"routing weights must be a float tensor shaped like the experts {tuple(self.experts.shape)}, "
                f"got {self.weights.dtype} of shape {tuple(self.weights.shape)}"
            )

    @property
    def slots(self) -> int:
        """Number of slots per token (K)."""
        return self.experts.shape[1]


# (router logits [N, E], layer index, router input [N, H]) -> Routing. The layer index counts the model's
# MoE blocks from 0. The router input lets a policy add logits of its own, such as null experts'.
RoutingPolicy = Callable[[torch.Tensor, int, torch.Tensor], Routing]


@dataclass(frozen=True)
class MoeLayerSpec:
    """Sizes of one MoE block, as the FLOP count and the routing trace need them."""

    index: int  # position among the model's MoE blocks, in module order
    name: str  # module path in the model, e.g. "model.layers.3.mlp"
    block_class: str
    num_experts: int  # E
    top_k: int  # the config's experts per token
    hidden_size: int  # model dim of the expert input and output
    expert_intermediate_size: int  # inner dim of one routed SwiGLU expert
    shared_intermediate_size: int = 0  # inner dim of the shared SwiGLU expert, 0 when the block has none
    has_shared_gate: bool = False  # a sigmoid gate Linear(hidden, 1) scales the shared expert


class RoutingObserver(Protocol):
    """Anything that is shown each MoE layer's routing during a forward pass (trace recorder, FLOP counter)."""

    def record(self, layer: MoeLayerSpec, routing: Routing) -> None: ...


def softmax_top_k(logits: torch.Tensor, top_k: int, *, renormalize: bool, weight_dtype: torch.dtype) -> Routing:
    """Route each token to the `top_k` experts of highest softmax probability (computed in float32).

    With `renormalize` the chosen probabilities are divided by their sum. Weights are returned in
    `weight_dtype`.
    """
    probabilities = torch.softmax(logits, dim=-1, dtype=torch.float32)  # [N, E]
    weights, experts = torch.topk(probabilities, top_k, dim=-1)  # [N, K]
    if renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return Routing(experts=experts, weights=weights.to(weight_dtype))


def top_k_softmax(logits: torch.Tensor, top_k: int, *, weight_dtype: torch.dtype) -> Routing:
    """Route each token to the `top_k` experts of highest logit, weighted by a softmax over those logits only."""
    top_logits, experts = torch.topk(logits.float(), top_k, dim=-1)  # [N, K]
    weights = torch.softmax(top_logits, dim=-1)
    return Routing(experts=experts, weights=weights.to(weight_dtype))


def check_routing(routing: Routing, num_tokens: int, num_experts: int, device: torch.device) -> None:
    """Raise `InvalidArgumentError` unless `routing` covers `num_tokens` tokens on `device` with ids in [-1, E).

    The range check reads one flag back from the device.
    """
    if routing.experts.shape[0] != num_tokens:
        raise InvalidArgumentError(
            f"the routing policy returned {routing.experts.shape[0]} rows for {num_tokens} tokens; "
            "return one row per token of the router logits"
        )
    if routing.experts.device != device or routing.weights.device != device:
        raise InvalidArgumentError(
            f"the routing policy returned tensors on {routing.experts.device} and {routing.weights.device} "
            f"for hidden states on {device}; return them on the device of the router logits"
        )
    out_of_range = (routing.experts < NULL_EXPERT) | (routing.experts >= num_experts)
    if bool(out_of_range.any()):
        bad = routing.experts[out_of_range][0].item()
        raise InvalidArgumentError(
            f"the routing policy returned expert id {bad}; ids must lie in [0, {num_experts}) or be "
            f"{NULL_EXPERT} for a null expert"
        )
