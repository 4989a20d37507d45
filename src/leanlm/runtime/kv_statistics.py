"""Mean and covariance of each KV head's keys (after RoPE) and values, gathered through the cache.

`StatisticsCache` is a transformers `Cache` that, instead of storing keys and values, adds them to running
sums in float64 and hands them straight back, so each forward pass must be one whole window (no earlier
tokens to attend to). Used for PCA initialisation of projected caches.

Shapes: B batch, T tokens, L layers, Hkv KV heads, D head dim.
"""

from dataclasses import dataclass

import torch
from transformers import Cache
from transformers.cache_utils import CacheLayerMixin


@dataclass
class KVStatistics:
    key_mean: torch.Tensor  # [L, Hkv, D]
    key_covariance: torch.Tensor  # [L, Hkv, D, D]
    value_mean: torch.Tensor  # [L, Hkv, D]
    value_covariance: torch.Tensor  # [L, Hkv, D, D]
    tokens: int


class _MomentSums:
    """Running first and second moments of [B, Hkv, T, D] states, per head, in float64."""

    def __init__(self) -> None:
        self.count = 0
        self.total: torch.Tensor | None = None  # [Hkv, D]
        self.outer: torch.Tensor | None = None  # [Hkv, D, D]

    def add(self, states: torch.Tensor) -> None:
        x = states.detach().double().transpose(0, 1).flatten(1, 2)  # [Hkv, B*T, D]
        if self.total is None:
            self.total = torch.zeros(x.shape[0], x.shape[2], dtype=torch.float64, device=x.device)
            self.outer = torch.zeros(x.shape[0], x.shape[2], x.shape[2], dtype=torch.float64, device=x.device)
        self.total += x.sum(dim=1)
        self.outer += x.transpose(1, 2) @ x
        self.count += x.shape[1]

    def mean_and_covariance(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.total / self.count  # [Hkv, D]
        covariance = self.outer / self.count - mean[:, :, None] * mean[:, None, :]  # [Hkv, D, D]
        return mean, covariance


class StatisticsLayer(CacheLayerMixin):
    is_sliding = False

    def __init__(self) -> None:
        super().__init__()
        self.key_sums = _MomentSums()
        self.value_sums = _MomentSums()

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        self.is_initialized = True
        self.key_sums.add(key_states)
        self.value_sums.add(value_states)
        return key_states, value_states

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return query_length, 0

    def get_seq_length(self) -> int:
        return 0

    def get_max_length(self) -> int:
        return -1


class StatisticsCache(Cache):
    def __init__(self, num_layers: int) -> None:
        super().__init__(layers=[StatisticsLayer() for _ in range(num_layers)])

    def statistics(self) -> KVStatistics:
        keys = [layer.key_sums.mean_and_covariance() for layer in self.layers]
        values = [layer.value_sums.mean_and_covariance() for layer in self.layers]
        return KVStatistics(
            key_mean=torch.stack([mean for mean, _ in keys]),
            key_covariance=torch.stack([cov for _, cov in keys]),
            value_mean=torch.stack([mean for mean, _ in values]),
            value_covariance=torch.stack([cov for _, cov in values]),
            tokens=self.layers[0].key_sums.count,
        )
