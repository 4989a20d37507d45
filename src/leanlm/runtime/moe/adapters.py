"""Adapters that expose each transformers MoE block's router, stock routing rule and experts.

transformers 5.25 stores the routed experts of all five supported blocks as fused 3-D SwiGLU weights:
`experts.gate_up_proj` [E, 2I, H] (gate rows first, then up rows) and `experts.down_proj` [E, H, I]. The router
module's forward returns (router logits, top-k weights, top-k indices). The blocks differ in the router's
attribute name, the top-k rule and whether a shared expert runs on every token.

The adapter of a block class is found through `MOE_ADAPTERS`, the one registry of this extension point.

Shapes: N tokens (B x T flattened), H model dim, I expert inner dim, E experts, K slots per token.
"""

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.granitemoe.modeling_granitemoe import GraniteMoeMoE
from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
from transformers.models.olmoe.modeling_olmoe import OlmoeSparseMoeBlock
from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeSparseMoeBlock
from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock

from leanlm.errors import InvalidArgumentError
from leanlm.runtime.moe.routing import MoeLayerSpec, Routing, softmax_top_k, top_k_softmax


class MoeBlockAdapter:
    """Access to one MoE block class whose routed experts are fused SwiGLU weights.

    Subclasses set `block_class` and `router_attribute` and implement `stock_routing`. Blocks with a shared
    expert also override `shared_expert_forward` and `shared_sizes`.
    """

    block_class: type[nn.Module]
    router_attribute: str  # name of the router module inside the block

    def router(self, block: nn.Module) -> nn.Module:
        return getattr(block, self.router_attribute)

    def router_logits(self, block: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """Return the router logits [N, E] of hidden states [N, H].

        The router module itself is called, so forward hooks on it (transformers records `router_logits` for
        the auxiliary loss that way) still fire. Its own top-k is computed too and dropped.
        """
        return self.router(block)(hidden)[0]

    def stock_routing(self, block: nn.Module, logits: torch.Tensor) -> Routing:
        """Return the routing [N, K] the block's own router derives from `logits` [N, E]."""
        raise NotImplementedError

    def prepare_hidden(self, block: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """Return the hidden states [N, H] the router and experts see (unchanged unless a block overrides it)."""
        return hidden

    def expert_forward(self, block: nn.Module, expert: int, hidden: torch.Tensor) -> torch.Tensor:
        """Run routed expert `expert` on hidden states [M, H] and return its output [M, H], unweighted."""
        experts = block.experts
        gate, up = F.linear(hidden, experts.gate_up_proj[expert]).chunk(2, dim=-1)  # [M, I] each
        return F.linear(experts.act_fn(gate) * up, experts.down_proj[expert])  # [M, H]

    def shared_expert_forward(self, block: nn.Module, hidden: torch.Tensor) -> torch.Tensor | None:
        """Return the shared expert's gated output [N, H], or None when the block has no shared expert."""
        return None

    def shared_sizes(self, block: nn.Module) -> tuple[int, bool]:
        """Return the shared expert's inner dim (0 without one) and whether a sigmoid gate scales it."""
        return 0, False

    def describe(self, block: nn.Module, index: int, name: str) -> MoeLayerSpec:
        """Return the sizes of `block`, after checking that its experts use the fused SwiGLU layout."""
        check_fused_layout(block)
        num_experts, intermediate_x2, hidden_size = block.experts.gate_up_proj.shape
        shared_intermediate_size, has_shared_gate = self.shared_sizes(block)
        return MoeLayerSpec(
            index=index,
            name=name,
            block_class=self.block_class.__name__,
            num_experts=num_experts,
            top_k=self.router(block).top_k,
            hidden_size=hidden_size,
            expert_intermediate_size=intermediate_x2 // 2,
            shared_intermediate_size=shared_intermediate_size,
            has_shared_gate=has_shared_gate,
        )


def check_fused_layout(block: nn.Module) -> None:
    """Raise `InvalidArgumentError` unless `block.experts` contains [E, 2I, H] gate-up and [E, H, I] down weights.

    transformers marks other layouts (transposed, interleaved gate and up, biases, no gate) with flags on the
    experts module. None of the supported blocks sets them in 5.25.
    """
    experts = block.experts
    layout = {
        "is_transposed": getattr(experts, "is_transposed", False),
        "is_concatenated": getattr(experts, "is_concatenated", True),
        "has_bias": getattr(experts, "has_bias", False),
        "has_gate": getattr(experts, "has_gate", True),
    }
    expected = {"is_transposed": False, "is_concatenated": True, "has_bias": False, "has_gate": True}
    if layout != expected:
        raise InvalidArgumentError(
            f"{type(block).__name__} experts use the layout {layout}; the MoE runtime supports only {expected}"
        )

    num_experts, intermediate_x2, hidden_size = experts.gate_up_proj.shape
    down_shape = tuple(experts.down_proj.shape)
    if down_shape != (num_experts, hidden_size, intermediate_x2 // 2):
        raise InvalidArgumentError(
            f"{type(block).__name__} has gate_up_proj {tuple(experts.gate_up_proj.shape)} and down_proj "
            f"{down_shape}; expected down_proj {(num_experts, hidden_size, intermediate_x2 // 2)}"
        )


class MixtralAdapter(MoeBlockAdapter):
    """Mixtral: softmax over all experts in float32, top-k, chosen probabilities renormalised, float32 weights."""

    block_class = MixtralSparseMoeBlock
    router_attribute = "gate"

    def stock_routing(self, block: nn.Module, logits: torch.Tensor) -> Routing:
        return softmax_top_k(logits, block.gate.top_k, renormalize=True, weight_dtype=torch.float32)

    def prepare_hidden(self, block: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        # training-time multiplicative jitter, as the stock block applies it (out of place here)
        if block.training and block.jitter_noise > 0:
            noise = torch.empty_like(hidden).uniform_(1.0 - block.jitter_noise, 1.0 + block.jitter_noise)
            return hidden * noise
        return hidden


class SoftmaxTopKAdapter(MoeBlockAdapter):
    """Qwen3-MoE and OLMoE: softmax in float32, top-k, renormalised if `norm_topk_prob`, weights in logit dtype."""

    router_attribute = "gate"

    def stock_routing(self, block: nn.Module, logits: torch.Tensor) -> Routing:
        router = block.gate
        return softmax_top_k(logits, router.top_k, renormalize=router.norm_topk_prob, weight_dtype=logits.dtype)


class Qwen3MoeAdapter(SoftmaxTopKAdapter):
    block_class = Qwen3MoeSparseMoeBlock


class OlmoeAdapter(SoftmaxTopKAdapter):
    block_class = OlmoeSparseMoeBlock


class Qwen2MoeAdapter(SoftmaxTopKAdapter):
    """Qwen2-MoE: the Qwen3-MoE rule, plus a shared SwiGLU expert on every token scaled by a sigmoid gate."""

    block_class = Qwen2MoeSparseMoeBlock

    def shared_expert_forward(self, block: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        shared = block.shared_expert(hidden)  # [N, H]
        return torch.sigmoid(block.shared_expert_gate(hidden)) * shared  # gate [N, 1]

    def shared_sizes(self, block: nn.Module) -> tuple[int, bool]:
        return block.shared_expert.intermediate_size, True


class GraniteMoeAdapter(MoeBlockAdapter):
    """GraniteMoe: top-k on the float32 logits, softmax over the k chosen logits, weights in the model dtype."""

    block_class = GraniteMoeMoE
    router_attribute = "router"

    def stock_routing(self, block: nn.Module, logits: torch.Tensor) -> Routing:
        # the router casts its logits to float32, so the hidden dtype is read from its weight
        router = block.router
        return top_k_softmax(logits, router.top_k, weight_dtype=router.weight.dtype)


class AdapterRegistry:
    """Adapters keyed by the exact block class they handle. Registering a class twice raises."""

    def __init__(self, adapters: Iterable[MoeBlockAdapter] = ()) -> None:
        self._adapters: dict[type[nn.Module], MoeBlockAdapter] = {}
        for adapter in adapters:
            self.register(adapter)

    def register(self, adapter: MoeBlockAdapter) -> None:
        block_class = adapter.block_class
        if block_class in self._adapters:
            raise InvalidArgumentError(
                f"an MoE adapter for {block_class.__name__} is already registered "
                f"({type(self._adapters[block_class]).__name__})"
            )
        self._adapters[block_class] = adapter

    def lookup(self, module: nn.Module) -> MoeBlockAdapter | None:
        """Return the adapter of `module`'s exact class, or None. Subclasses are not matched."""
        return self._adapters.get(type(module))

    def supported(self) -> list[str]:
        """Return the names of the supported block classes, sorted."""
        return sorted(block_class.__name__ for block_class in self._adapters)


MOE_ADAPTERS = AdapterRegistry(
    [MixtralAdapter(), Qwen2MoeAdapter(), Qwen3MoeAdapter(), OlmoeAdapter(), GraniteMoeAdapter()]
)
