"""The attention implementation leanlm's caches need, registered with transformers as `KV_ATTENTION`.

It takes what a cache layer returns: plain key and value tensors (the plain cache), or a `ProjectedKV`
(projected features, possibly with evicted tokens). A `KeepDecision` passed along with a prefill masks
that prefill per KV head (see `token_eviction.py`): with kept slots the cache really evicts, without them
(training) the flags only weigh attention, differentiably.

A model uses this implementation only inside `kv_attention_enabled`.

Shapes: B batch, H query heads, Hkv KV heads, G = H / Hkv, T tokens, Tq query tokens, S cached slots, D head dim.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from leanlm.errors import InvalidArgumentError
from leanlm.runtime.projected_attention import projected_attention
from leanlm.runtime.projected_cache import ProjectedKV
from leanlm.runtime.token_eviction import KEEP_KWARG, KeepDecision, evicted_mask, visibility, visible_mask

KV_ATTENTION = "leanlm_kv"


def kv_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: ProjectedKV | torch.Tensor,
    value: ProjectedKV | torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Attend the way the cache layer's output and any keep decision need."""
    decision: KeepDecision | None = kwargs.pop(KEEP_KWARG, None)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5  # SDPA's default would use a rank, not D

    if decision is not None and decision.indices is None:
        return weighted_attention(query, key, value, attention_mask, decision, scale), None
    if decision is None and not isinstance(key, ProjectedKV):
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scale, dropout=dropout, **kwargs)
    if not isinstance(key, ProjectedKV):
        raise InvalidArgumentError(
            f"token eviction needs a ProjectedCache to store the kept tokens, got {type(key).__name__} states; "
            "build the cache with the eviction method's cache factory"
        )

    mask, is_causal = _resolve_mask(key, attention_mask, decision, query.shape[2])
    return projected_attention(query, key, mask, is_causal, scale), None


def _resolve_mask(kv: ProjectedKV, attention_mask, decision: KeepDecision | None, query_tokens: int):
    """Return (boolean mask [B, 1 or Hkv, Tq, S] or None, is_causal) for this call."""
    if decision is not None:  # prefill that evicts: causal and padding, then the gate's visibility
        seen = visible_mask(decision.flags, decision.window)  # [B, Hkv, T, T]
        return (seen if attention_mask is None else seen & attention_mask), False
    if kv.slot_valid is not None:  # after eviction transformers' mask no longer lines up with the slots
        new_tokens = kv.keys[0].shape[1] - kv.slot_valid.shape[1]
        return evicted_mask(kv.slot_valid, new_tokens, query_tokens), False
    return attention_mask, query_tokens > 1 and attention_mask is None


def weighted_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask, decision: KeepDecision, scale: float
) -> torch.Tensor:
    """Attention whose weights are multiplied by the keep flags and renormalised; return [B, T, H, D].

    With 0/1 flags this equals masking the evicted tokens out. Multiplying (rather than adding -inf) lets a
    straight-through gradient reach the flag of a token that is currently evicted.
    """
    B, H, T, D = query.shape
    group = H // key.shape[1]
    key = key.repeat_interleave(group, dim=1)  # [B, H, T, D]
    value = value.repeat_interleave(group, dim=1)

    allowed = torch.ones((T, T), dtype=torch.bool, device=query.device).tril()  # [T, T] causal
    if attention_mask is not None:
        allowed = allowed & attention_mask  # [B, 1, T, T] with padding
    scores = (query @ key.transpose(-1, -2) * scale).masked_fill(~allowed, float("-inf"))  # [B, H, T, T]
    weights = torch.exp(scores - scores.amax(dim=-1, keepdim=True))

    seen = visibility(decision.flags, decision.window).repeat_interleave(group, dim=1)  # [B, H, T, T]
    weights = weights * seen.to(weights.dtype)
    weights = weights / weights.sum(dim=-1, keepdim=True)
    return (weights @ value).transpose(1, 2).contiguous()  # [B, T, H, D]


def _register() -> None:
    if KV_ATTENTION not in AttentionInterface._global_mapping:
        AttentionInterface.register(KV_ATTENTION, kv_attention_forward)
        AttentionMaskInterface.register(KV_ATTENTION, sdpa_mask)


@contextmanager
def kv_attention_enabled(model: PreTrainedModel) -> Iterator[PreTrainedModel]:
    """Switch `model` to leanlm's KV attention for the duration of the block, then restore its implementation."""
    _register()
    previous = model.config._attn_implementation
    model.set_attn_implementation(KV_ATTENTION)
    try:
        yield model
    finally:
        model.set_attn_implementation(previous)
