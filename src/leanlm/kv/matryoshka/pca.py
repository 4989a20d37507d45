"""PCA of each KV head's keys (after RoPE) and values on calibration text: the starting bases.

Shapes: N windows, T tokens, L layers, Hkv KV heads, D head dim.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from leanlm.kv.matryoshka.positions import offset_positions
from leanlm.runtime.kv_statistics import KVStatistics, StatisticsCache


@dataclass
class PCABases:
    key_basis: torch.Tensor  # [L, Hkv, D, D], columns sorted by decreasing variance
    key_mean: torch.Tensor  # [L, Hkv, D]
    key_variance: torch.Tensor  # [L, Hkv, D], eigenvalues in the same order
    value_basis: torch.Tensor
    value_mean: torch.Tensor
    value_variance: torch.Tensor
    tokens: int


def collect_statistics(
    model: PreTrainedModel, windows: torch.Tensor, *, seed: int = 0, progress: Callable[[int], None] | None = None
) -> KVStatistics:
    """Run each calibration window [N, T] through the model once, at a random position offset, gathering
    per-head moments."""
    cache = StatisticsCache(model.config.num_hidden_layers)
    generator = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        for window in windows.split(1):  # [1, T]: each forward starts from an empty context
            positions = offset_positions(model, window.shape[1], generator)
            model(input_ids=window.to(model.device), position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1)
            if progress:
                progress(1)
    return cache.statistics()


def pca_bases(statistics: KVStatistics) -> PCABases:
    """Eigendecompose each head's covariance (float64), columns sorted by decreasing eigenvalue."""
    key_variance, key_basis = _sorted_eigh(statistics.key_covariance)
    value_variance, value_basis = _sorted_eigh(statistics.value_covariance)
    return PCABases(
        key_basis=key_basis.float(),
        key_mean=statistics.key_mean.float(),
        key_variance=key_variance.float(),
        value_basis=value_basis.float(),
        value_mean=statistics.value_mean.float(),
        value_variance=value_variance.float(),
        tokens=statistics.tokens,
    )


def _sorted_eigh(covariance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending, [..., D] and [..., D, D]
    return eigenvalues.flip(-1).clamp_min(0), eigenvectors.flip(-1)
