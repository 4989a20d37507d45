"""AdaMoE routing: top-k over real and null experts, and the load-balancing loss that governs null usage.

A router with E real experts gains M null experts: M extra logits. Each token takes the top K of the E + M
logits. A null expert in its top K computes nothing, so a token uses between 0 and K real experts. The real
experts' weights are their softmax probabilities (softmax over all E + M) renormalised to sum to 1 over the
real experts chosen; a token with no real expert divides by 1 and gets zero output.

A model converted by `leanlm moe convert` is different: its experts are additive parts of the dense MLP,
and its output is the plain sum of the chosen experts (each gets weight 1/k, which the checkpoint's down
projections multiply back by its top-k k). Renormalising there would scale a token with r < k real experts
up by k / r. For such a model a fixed `real_weight` of 1/k is given instead: each chosen real expert keeps
its base weight and a null slot drops its expert's share. The gradient is still that of the renormalised
weights, so the next-token loss still trains the router. On the converted SmolLM2
(top-12 of 16, experts dropped by a router threshold to 10 on average) this gave perplexity 87.8 on
4 x 256 evaluation tokens, against 91.1 renormalised.

The balance loss is the Switch Transformer loss (E + M) * sum_i f_i * P_i over all E + M experts, with f_i
the fraction of a batch's slots sent to expert i and P_i its mean probability, except that every null
expert's f_i is replaced by the mean of f over the M null experts. Which null expert takes a slot is then
irrelevant, and the loss sees only how many slots go to null experts in total, which sets the average
number of real experts per token.

Shapes: N tokens, E real experts, M null experts, K slots per token.
"""

import torch

from leanlm.errors import InvalidArgumentError
from leanlm.runtime.moe import NULL_EXPERT, Routing


def adamoe_routing(
    logits: torch.Tensor, num_real: int, top_k: int, real_weight: float | None = None
) -> tuple[Routing, torch.Tensor, torch.Tensor]:
    """Route tokens over real and null experts.

    `logits` [N, E + M] contain the real experts first. With `real_weight` None the chosen real experts'
    weights are renormalised, and with a number each chosen real expert gets that weight. Returns the routing
    (null slots as expert -1 with weight 0), the softmax probabilities [N, E + M] and the chosen ids [N, K]
    over all E + M experts, which the balance loss needs. The top K is taken on the logits, not on the probabilities, because the two orders are the
    same in exact arithmetic and only the logits keep it when they are tiny (see `leanlm.moe.granite`).
    """
    _check_sizes(logits, num_real, top_k)
    probabilities = torch.softmax(logits.float(), dim=-1)  # [N, E+M]
    chosen = torch.topk(logits.float(), top_k, dim=-1).indices  # [N, K]

    is_real = chosen < num_real  # [N, K]
    real_probabilities = probabilities.gather(1, chosen) * is_real  # [N, K], 0 on null slots
    total = real_probabilities.sum(dim=-1, keepdim=True)  # [N, 1]
    weights = real_probabilities / torch.where(total > 0, total, torch.ones_like(total))  # [N, K]
    if real_weight is not None:
        # Straight-through estimate: the forward value is real_weight on every real slot and the gradient
        # is the renormalised weights' gradient.
        weights = is_real.to(weights.dtype) * real_weight + (weights - weights.detach())

    experts = torch.where(is_real, chosen, torch.full_like(chosen, NULL_EXPERT))
    return Routing(experts=experts, weights=weights), probabilities, chosen


def balance_loss(probabilities: torch.Tensor, chosen: torch.Tensor, num_real: int) -> torch.Tensor:
    """Return the AdaMoE load-balancing loss of one layer (1.0 when usage and probabilities are uniform).

    `probabilities` [N, E + M] and `chosen` [N, K] come from `adamoe_routing`. The slot fractions f [E + M] are
    counted over the batch (the token axis). The null experts' fractions are then averaged over the null
    experts (the expert axis). Averaging over tokens instead would leave f unchanged and give the plain
    Switch loss, in which the split among null experts matters.
    """
    total_experts = probabilities.shape[-1]
    slots = torch.bincount(chosen.reshape(-1), minlength=total_experts).to(probabilities.dtype)  # [E+M]
    fractions = slots / slots.sum()

    if total_experts > num_real:
        null_mean = fractions[num_real:].mean()
        fractions = torch.cat([fractions[:num_real], null_mean.expand(total_experts - num_real)])

    mean_probabilities = probabilities.mean(dim=0)  # [E+M], mean over tokens
    return total_experts * (fractions * mean_probabilities).sum()


def real_experts_per_token(routing: Routing) -> torch.Tensor:
    """Return the number of real experts of each token [N] (float, for averaging)."""
    return (routing.experts != NULL_EXPERT).sum(dim=-1).float()


def _check_sizes(logits: torch.Tensor, num_real: int, top_k: int) -> None:
    if logits.dim() != 2:
        raise InvalidArgumentError(f"router logits must be [N, E + M], got shape {tuple(logits.shape)}")
    if not 1 <= num_real <= logits.shape[-1]:
        raise InvalidArgumentError(f"num_real must be from 1 to {logits.shape[-1]} (the logits' width), got {num_real}")
    if not 1 <= top_k <= logits.shape[-1]:
        raise InvalidArgumentError(
            f"top_k must be from 1 to the number of real and null experts ({logits.shape[-1]}), got {top_k}"
        )
