"""A KV cache that keeps each KV head's keys and values in a low-rank basis of its own width.

For layer l and KV head h, with an orthonormal basis U (D x D) and a mean mu, only the first R columns are
kept: k' = (k - mu_K) U_K[:, :R_K] and v' = (v - mu_V) U_V[:, :R_V], with keys taken after RoPE. Each head
stores its own rank with no padding, so a head at rank R keeps R / D of its full bytes. Attention runs in
the projected space (see `projected_attention.py`).

A keep decision passed with a prefill (see `token_eviction.py`) makes the layer store only the kept tokens
of each head, so feature compression and token eviction multiply. Identity bases at full rank give a cache
that evicts tokens and compresses nothing.

Shapes: B batch, T tokens, Hkv KV heads, D head dim, R rank of one head, K kept slots.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import Cache
from transformers.cache_utils import CacheLayerMixin

from leanlm.runtime.token_eviction import KEEP_KWARG, KeepDecision

# Decode grows a full buffer by a quarter of its capacity, at least MIN_GROWTH and at most MAX_GROWTH
# positions: a short generation reserves little, and a long one copies its buffers rarely.
MIN_GROWTH, MAX_GROWTH = 16, 256


@dataclass
class HeadProjection:
    """The truncated bases and means of one layer, one entry per KV head.

    Optional row masks [B, R] zero the projected features past each batch row's own rank, so one batch
    can try a different rank per row (the rank search does). A masked feature adds nothing to the scores
    or to the output, so a masked row computes the same as a row cut to its rank.
    """

    key_bases: list[torch.Tensor]  # Hkv x [D, R_K]
    key_means: torch.Tensor  # [Hkv, D]
    value_bases: list[torch.Tensor]  # Hkv x [D, R_V]
    value_means: torch.Tensor  # [Hkv, D]
    key_masks: list[torch.Tensor] | None = None  # Hkv x [B, R_K]
    value_masks: list[torch.Tensor] | None = None  # Hkv x [B, R_V]

    @property
    def key_ranks(self) -> list[int]:
        return [basis.shape[1] for basis in self.key_bases]

    @property
    def value_ranks(self) -> list[int]:
        return [basis.shape[1] for basis in self.value_bases]

    @classmethod
    def identity(cls, kv_heads: int, head_dim: int, dtype: torch.dtype, device: torch.device | str = "cpu") -> "HeadProjection":
        """Return full-rank identity bases with zero means: keys and values are stored unchanged."""
        eye = torch.eye(head_dim, dtype=dtype, device=device)
        zeros = torch.zeros((kv_heads, head_dim), dtype=dtype, device=device)
        return cls(key_bases=[eye] * kv_heads, key_means=zeros, value_bases=[eye] * kv_heads, value_means=zeros)


@dataclass
class ProjectedKV:
    """Projected keys and values of one layer, per head, with their projection: the input of attention."""

    keys: list[torch.Tensor]  # Hkv x [B, T, R_K]
    values: list[torch.Tensor]  # Hkv x [B, T, R_V]
    projection: HeadProjection
    slot_valid: torch.Tensor | None = None  # [B, K] once a prefill evicted tokens: the first K slots are its kept ones


class ProjectedLayer(CacheLayerMixin):
    """One layer's projected keys and values, grown in place rather than concatenated every step.

    The prefill allocates exactly the tokens it brings, so the bytes after prefill equal the sum of the
    ranks times the tokens. Decode then grows each full buffer (see `MIN_GROWTH`) by one copy.
    """

    is_sliding = False
    is_compileable = False

    def __init__(self, projection: HeadProjection):
        super().__init__()
        self.projection = projection
        self.key_buffers: list[torch.Tensor] = []  # Hkv x [B, capacity, R_K]
        self.value_buffers: list[torch.Tensor] = []
        self.length = 0  # slots in use
        self.seen = 0  # tokens processed, evicted ones included: the next token's position
        self.slot_valid: torch.Tensor | None = None  # [B, K] after a prefill that evicted tokens

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, kwargs: dict | None = None, **extra) -> tuple:
        """Project new keys and values [B, Hkv, T_new, D] and append them; return the whole projected layer.

        transformers passes the attention call's keyword arguments as `kwargs`; a `KeepDecision` among them
        on the first update evicts tokens (see `_prefill_evicting`).
        """
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        projection = self.projection
        new_keys = project_heads(key_states, projection.key_bases, projection.key_means, projection.key_masks)
        new_values = project_heads(value_states, projection.value_bases, projection.value_means, projection.value_masks)

        decision = (kwargs or {}).get(KEEP_KWARG)
        if decision is not None and decision.indices is not None and self.seen == 0:
            return self._prefill_evicting(new_keys, new_values, decision)

        added = key_states.shape[2]
        self._reserve(new_keys, new_values, self.length + added)
        for buffer, new in zip(self.key_buffers + self.value_buffers, new_keys + new_values):
            buffer[:, self.length : self.length + added] = new
        self.length += added
        self.seen += added

        kv = ProjectedKV(
            keys=[buffer[:, : self.length] for buffer in self.key_buffers],
            values=[buffer[:, : self.length] for buffer in self.value_buffers],
            projection=self.projection,
            slot_valid=self.slot_valid,
        )
        return kv, kv

    def _prefill_evicting(self, new_keys: list[torch.Tensor], new_values: list[torch.Tensor], decision: KeepDecision) -> tuple:
        """Store only the kept tokens of each head; return the whole prefill, which attends under the decision's mask."""
        indices = decision.indices  # [B, Hkv, K]
        self.key_buffers = [_gather_tokens(new, indices[:, h]) for h, new in enumerate(new_keys)]  # Hkv x [B, K, R_K]
        self.value_buffers = [_gather_tokens(new, indices[:, h]) for h, new in enumerate(new_values)]
        self.length = indices.shape[2]
        self.seen = new_keys[0].shape[1]
        self.slot_valid = decision.slot_valid

        kv = ProjectedKV(keys=new_keys, values=new_values, projection=self.projection)
        return kv, kv

    def _reserve(self, new_keys: list[torch.Tensor], new_values: list[torch.Tensor], needed: int) -> None:
        if not self.key_buffers:
            self.key_buffers = [torch.empty_like(new) for new in new_keys]  # exactly the prefill's tokens
            self.value_buffers = [torch.empty_like(new) for new in new_values]
            return
        capacity = self.key_buffers[0].shape[1]
        if needed <= capacity:
            return
        grown = max(needed, capacity + min(max(capacity // 4, MIN_GROWTH), MAX_GROWTH))
        self.key_buffers = [_grow(buffer, grown, self.length) for buffer in self.key_buffers]
        self.value_buffers = [_grow(buffer, grown, self.length) for buffer in self.value_buffers]

    # transformers sizes its masks and default positions by the tokens processed; after an eviction the
    # attention builds its own mask over the slots (see `token_eviction.evicted_mask`)
    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.seen + query_length, 0

    def get_seq_length(self) -> int:
        return self.seen

    def get_max_length(self) -> int:
        return -1

    def reset(self) -> None:
        self.key_buffers, self.value_buffers, self.length, self.seen = [], [], 0, 0
        self.slot_valid = None
        self.is_initialized = False

    def nbytes(self) -> int:
        return sum(b.untyped_storage().nbytes() for b in self.key_buffers + self.value_buffers)


class ProjectedCache(Cache):
    """A transformers `Cache` of `ProjectedLayer`s, one per model layer."""

    def __init__(self, projections: Sequence[HeadProjection]):
        super().__init__(layers=[ProjectedLayer(projection) for projection in projections])

    def nbytes(self) -> int:
        return sum(layer.nbytes() for layer in self.layers)


def project_heads(
    states: torch.Tensor, bases: list[torch.Tensor], means: torch.Tensor, masks: list[torch.Tensor] | None = None
) -> list[torch.Tensor]:
    """Project [B, Hkv, T, D] head by head: (x - mu_h) U_h, giving Hkv tensors [B, T, R_h]."""
    centred = states - means[None, :, None, :].to(states.dtype)  # [B, Hkv, T, D]
    projected = [centred[:, h] @ basis.to(states.dtype) for h, basis in enumerate(bases)]
    if masks is None:
        return projected
    return [p * mask[:, None, :].to(p.dtype) for p, mask in zip(projected, masks)]  # [B, T, R_h]


def _gather_tokens(states: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Gather tokens of one head: states [B, T, R] and indices [B, K] give [B, K, R]."""
    return states.gather(1, indices[..., None].expand(-1, -1, states.shape[-1]))


def _grow(buffer: torch.Tensor, capacity: int, used: int) -> torch.Tensor:
    grown = buffer.new_empty((buffer.shape[0], capacity, buffer.shape[2]))  # [B, capacity, R]
    grown[:, :used] = buffer[:, :used]
    return grown
