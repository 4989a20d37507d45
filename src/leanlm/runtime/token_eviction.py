"""Token eviction in a KV cache: which prompt tokens each KV head keeps, and the attention masks that follow.

A keep decision is made once per layer, over the prompt, before the layer attends. During that prefill a query
sees an earlier token when the token is kept or lies within `window` tokens before it (itself included).
Afterwards the cache holds only the kept tokens of each head, and every later token is kept, so a decoding
query sees exactly what the same rule shows it. Training masks attention with the same rule (`visibility`),
which is why a trained gate behaves the same when its tokens are really evicted.

The cache's kept tokens keep the rotary positions they were cached with; new tokens get their true positions
from the caller, so positions after eviction stay right.

Shapes: B batch, Hkv KV heads, T prompt tokens, K kept slots, Tq query tokens, S cached slots.
"""

from dataclasses import dataclass

import torch

from leanlm.errors import InvalidArgumentError

KEEP_KWARG = "leanlm_keep"  # keyword that carries a KeepDecision from the gate's hook to cache and attention


@dataclass
class KeepDecision:
    """Keep flags of one layer's prompt tokens per KV head, and, at inference, the slots the cache keeps.

    `flags` may carry a straight-through gradient in training. `indices` and `slot_valid` are None in training,
    where nothing is evicted and the flags only mask attention.
    """

    flags: torch.Tensor  # [B, Hkv, T], 1 keep and 0 evict
    window: int  # a query sees the `window` tokens up to and including itself whatever their flags
    indices: torch.Tensor | None = None  # [B, Hkv, K] kept positions, ascending; invalid slots first
    slot_valid: torch.Tensor | None = None  # [B, K], False for slots a row leaves empty (it keeps fewer tokens)


def select_kept(
    scores: torch.Tensor, real: torch.Tensor | None, keep: float, *, sinks: int, window: int
) -> KeepDecision:
    """Keep round(keep x n) tokens per row and KV head: the first `sinks` and last `window` real tokens, then
    the highest scores.

    scores: [B, Hkv, T] keep scores; real: [B, T] bool, False for left padding (None: all real).
    """
    if not 0 < keep <= 1:
        raise InvalidArgumentError(f"keep fraction must lie in (0, 1], got {keep}")
    B, Hkv, T = scores.shape
    real = torch.ones((B, T), dtype=torch.bool, device=scores.device) if real is None else real.bool()
    lengths = real.sum(dim=1)  # [B]

    # forced tokens: attention sinks at the start of each row, the recent window at its end
    first = T - lengths  # [B] position of each row's first real token (left padding)
    position = torch.arange(T, device=scores.device)
    offset = position[None, :] - first[:, None]  # [B, T] index within the row's real tokens
    forced = real & ((offset < sinks) | (position[None, :] >= T - window))  # [B, T]

    quota = torch.maximum((keep * lengths).round().long(), forced.sum(dim=1)).clamp(max=lengths)  # [B]
    K = int(quota.max())
    ranked = scores.float().masked_fill(forced[:, None], float("inf")).masked_fill(~real[:, None], float("-inf"))
    top = ranked.topk(K, dim=-1).indices  # [B, Hkv, K], best first

    # rows keeping fewer than K tokens leave their lowest-ranked slots empty; empty slots sort first
    rank = torch.arange(K, device=scores.device)
    taken = rank[None, :] < quota[:, None]  # [B, K]
    indices = top.masked_fill(~taken[:, None], -1).sort(dim=-1).values  # [B, Hkv, K]
    slot_valid = rank[None, :] >= (K - quota)[:, None]  # [B, K]

    flags = torch.zeros((B, Hkv, T), dtype=scores.dtype, device=scores.device)
    flags.scatter_(2, indices.clamp(min=0), slot_valid[:, None, :].expand(B, Hkv, K).to(flags.dtype))
    return KeepDecision(flags=flags, window=window, indices=indices.clamp(min=0), slot_valid=slot_valid)


def visibility(flags: torch.Tensor, window: int) -> torch.Tensor:
    """Return how much each prompt query sees of each prompt key, [B, Hkv, T, T]: causal, and within the
    window or kept. Values are the flags themselves, so a straight-through gradient reaches them."""
    causal, recent = _causal_and_recent(flags.shape[-1], window, flags.device)
    seen = torch.where(recent, torch.ones_like(flags[:, :, None, :]), flags[:, :, None, :])  # [B, Hkv, T, T]
    return seen * causal


def visible_mask(flags: torch.Tensor, window: int) -> torch.Tensor:
    """Return the boolean form of `visibility`, [B, Hkv, T, T], without building a float tensor of that size."""
    causal, recent = _causal_and_recent(flags.shape[-1], window, flags.device)
    return recent | (causal & (flags[:, :, None, :] > 0))  # [B, Hkv, T, T]


def _causal_and_recent(tokens: int, window: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the causal mask [T, T] and its part within `window` tokens of each query (itself included)."""
    query = torch.arange(tokens, device=device)[:, None]
    key = torch.arange(tokens, device=device)[None, :]
    causal = key <= query
    return causal, causal & (query - key < window)


def evicted_mask(slot_valid: torch.Tensor, new_tokens: int, query_tokens: int) -> torch.Tensor:
    """Return the boolean mask [B, 1, Tq, K + N] of queries over a cache evicted down to K slots.

    The K kept slots are visible where valid. The N tokens cached after the prefill are all kept, and the
    Tq queries are the last Tq of them, so those N are seen causally.
    """
    B, K = slot_valid.shape
    N, Tq = new_tokens, query_tokens
    query = torch.arange(N - Tq, N, device=slot_valid.device)[:, None]  # [Tq, 1] index among the new tokens
    later = torch.arange(N, device=slot_valid.device)[None, :] <= query  # [Tq, N]
    kept = slot_valid[:, None, None, :].expand(B, 1, Tq, K)
    return torch.cat([kept, later[None, None].expand(B, 1, Tq, N)], dim=-1)
