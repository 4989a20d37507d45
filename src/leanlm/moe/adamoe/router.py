"""Routers extended with null experts, one per MoE layer, and the routing policy that runs them.

Each layer's router keeps a trainable copy of the model's real router rows [E, H] and gains M null rows
[M, H], initialised as copies of real rows (null expert j copies real expert j mod E). One bias on the null
logits steers how many real experts a token gets on average.

Weights are kept in unscaled units: logits = logit_scale * (W x). A converted model stores its router
scaled by 2**-40 (see `leanlm.moe.granite`), so that its softmax weights are exactly uniform. The weights'
gradients leave the scale out, so they and Adam's steps have ordinary sizes. The gradient that flows on
into the hidden states is the true one. With M = 0 and untouched weights the logits equal the model's own, bit for bit, because the
scale is a power of two.

Shapes: N tokens, H model dim, E real experts, M null experts, K slots per token, L MoE layers.
"""

import torch
from torch import nn

from leanlm.errors import InvalidArgumentError
from leanlm.moe.adamoe.routing import (
    adamoe_routing,
    balance_loss,
    real_experts_per_token,
)
from leanlm.runtime.moe import Routing, find_moe_layers


class _ScaledLinear(torch.autograd.Function):
    """Return scale * (x W^T). The weight's gradient leaves out the scale; the input's gradient keeps it.

    The weight is stored in unscaled units, so its gradient in those units has an ordinary size for the
    optimiser. The input's gradient is the true one, so earlier layers see the router as it really acts.
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(hidden, weight)
        ctx.scale = scale
        return (hidden @ weight.T) * scale  # [N, R]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        hidden, weight = ctx.saved_tensors
        return (grad @ weight) * ctx.scale, grad.T @ hidden, None


class NullExpertRouter(nn.Module):
    """One layer's router over E real and M null experts."""

    def __init__(self, real_weight: torch.Tensor, num_null: int, logit_scale: float = 1.0):
        super().__init__()
        if num_null < 0:
            raise InvalidArgumentError(f"the number of null experts must be 0 or more, got {num_null}")
        unscaled = real_weight.detach().float() / logit_scale  # [E, H]
        copies = torch.arange(num_null) % unscaled.shape[0]
        self.real = nn.Parameter(unscaled.clone())  # [E, H]
        self.null = nn.Parameter(unscaled[copies].clone())  # [M, H]
        self.null_bias = nn.Parameter(torch.zeros(()), requires_grad=False)  # set by the real-expert target
        self.logit_scale = logit_scale

    @property
    def num_real(self) -> int:
        return self.real.shape[0]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Return the logits [N, E + M] of hidden states [N, H], real experts first."""
        hidden = hidden.to(self.real.dtype)
        weight = torch.cat([self.real, self.null])  # [E+M, H]
        bias = torch.cat([self.real.new_zeros(self.num_real), self.null_bias.expand(self.null.shape[0])]) * self.logit_scale
        return _ScaledLinear.apply(hidden, weight, self.logit_scale) + bias


class AdaMoERouters(nn.Module):
    """The null-expert routers of every MoE layer, with the routing policy and the statistics of the last forward."""

    def __init__(self, routers: list[NullExpertRouter], top_k: int, real_weight: float | None = None):
        super().__init__()
        self.layers = nn.ModuleList(routers)
        self.top_k = top_k
        self.real_weight = real_weight  # None: renormalise the chosen real experts' weights (see adamoe_routing)
        self.balance_losses: list[torch.Tensor] = []  # one per layer of the last forward
        self.real_counts: list[torch.Tensor] = []  # real experts per token [N], one per layer
        self.logit_spreads: list[float] = []  # standard deviation of the unscaled logits, one per layer
        self.real_total, self.token_layers = 0.0, 0  # real experts and (token, layer) pairs over every forward

    def policy(self, router_logits: torch.Tensor, layer_index: int, hidden: torch.Tensor) -> Routing:
        """Route one layer with its null-expert router (the stock router logits are not used)."""
        router = self.layers[layer_index]
        logits = router.logits(hidden)  # [N, E+M]
        routing, probabilities, chosen = adamoe_routing(logits, router.num_real, self.top_k, self.real_weight)
        # NOTE: the statistics reset when layer 0 routes, so they describe one forward pass only when every
        # forward starts at layer 0 (true for whole-model forwards, not for a policy called on one block).
        if layer_index == 0:
            self.balance_losses, self.real_counts, self.logit_spreads = [], [], []
        self.balance_losses.append(balance_loss(probabilities, chosen, router.num_real))
        self.real_counts.append(real_experts_per_token(routing).detach())
        self.real_total += self.real_counts[-1].sum().item()
        self.token_layers += self.real_counts[-1].numel()
        self.logit_spreads.append(logits.detach().float().std().item() / router.logit_scale)
        return Routing(experts=routing.experts, weights=routing.weights.to(hidden.dtype))

    def mean_balance_loss(self) -> torch.Tensor:
        return torch.stack(self.balance_losses).mean()

    def avg_real_experts(self) -> float:
        """Average real experts per token and layer in the last forward."""
        return torch.cat(self.real_counts).mean().item()

    def avg_real_experts_all(self) -> float:
        """Average real experts per token and layer over every forward since the routers were made."""
        return self.real_total / max(self.token_layers, 1)


def null_expert_routers(
    model: nn.Module, num_null: int, top_k: int, logit_scale: float = 1.0, real_weight: float | None = None
) -> AdaMoERouters:
    """Return null-expert routers for every MoE layer of `model`, initialised from its routers.

    `logit_scale` and `real_weight` are 2**-40 and 1/k for a model converted at top-k k, else 1 and None
    (see `leanlm.moe.adamoe.fit.converted_routing`). With None, AdaMoE renormalises the chosen real experts' weights, as Mixtral and GraniteMoe do. For a base that
    leaves the top-k probabilities unnormalised (Qwen2-MoE and Qwen3-MoE with `norm_topk_prob` False), M = 0
    therefore does not reproduce the base.
    """
    if top_k < 1:
        raise InvalidArgumentError(f"top_k must be a positive integer, got {top_k}")
    routers = [
        NullExpertRouter(layer.adapter.router(layer.block).weight, num_null, logit_scale)
        for layer in find_moe_layers(model)
    ]
    return AdaMoERouters(routers, top_k, real_weight)
