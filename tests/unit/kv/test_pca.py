"""PCA bases of the KV heads: orthonormal columns, sorted non-negative variances, exact at full width.

Shapes: L layers, Hkv KV heads, T tokens, D head dim.
"""

import pytest
import torch
from transformers import DynamicCache

from leanlm.kv.matryoshka.pca import pca_bases
from leanlm.runtime.kv_statistics import KVStatistics


@pytest.mark.parametrize("side", ["key", "value"])
def test_bases_orthonormal(pca, side):
    basis = getattr(pca, f"{side}_basis")  # [L, Hkv, D, D]
    identity = torch.eye(basis.shape[-1]).expand_as(basis)

    assert basis.shape == (2, 2, 16, 16)
    assert torch.allclose(basis.transpose(-1, -2) @ basis, identity, atol=1e-5)


@pytest.mark.parametrize("side", ["key", "value"])
def test_variances_sorted_non_negative(pca, side):
    variance = getattr(pca, f"{side}_variance")  # [L, Hkv, D]

    assert bool((variance >= 0).all())
    assert bool((variance[..., :-1] >= variance[..., 1:]).all())


def test_variances_are_eigenvalues(pca, model, windows):
    """Each column's variance equals the variance of the calibration values projected onto that column.

    Values, unlike keys, do not depend on the random position offsets the calibration uses.
    """
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(input_ids=windows, cache=cache, use_cache=True)
    values = cache.layers[0].values[:, 1].flatten(0, 1)  # [N*T, D], layer 0, KV head 1, every calibration token
    projected = (values - pca.value_mean[0, 1]) @ pca.value_basis[0, 1]  # [N*T, D]

    assert torch.allclose(projected.var(dim=0, unbiased=False), pca.value_variance[0, 1], rtol=1e-4, atol=1e-6)


def test_full_width_reconstruction_exact(pca, model, windows):
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(input_ids=windows, cache=cache, use_cache=True)

    for layer_index, layer in enumerate(cache.layers):
        for side, states in (("key", layer.keys), ("value", layer.values)):
            basis = getattr(pca, f"{side}_basis")[layer_index]  # [Hkv, D, D]
            mean = getattr(pca, f"{side}_mean")[layer_index][None, :, None, :]  # [1, Hkv, 1, D]
            projected = (states - mean) @ basis  # [B, Hkv, T, D], basis broadcast over the batch
            rebuilt = projected @ basis.transpose(-1, -2) + mean
            assert torch.allclose(rebuilt, states, atol=1e-5), f"{side}, layer {layer_index}"


def test_degenerate_covariance_clamped():
    """A rank-one covariance has round-off eigenvalues near zero, which must not come out negative."""
    direction = torch.randn(16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    covariance = torch.outer(direction, direction).expand(1, 1, 16, 16).clone()  # [L=1, Hkv=1, D, D]
    statistics = KVStatistics(
        key_mean=torch.zeros(1, 1, 16, dtype=torch.float64),
        key_covariance=covariance,
        value_mean=torch.zeros(1, 1, 16, dtype=torch.float64),
        value_covariance=covariance.clone(),
        tokens=1,
    )
    bases = pca_bases(statistics)
    top = bases.key_basis[0, 0, :, 0].double()

    assert bool((bases.key_variance >= 0).all())
    assert bases.key_variance[0, 0, 0].item() == pytest.approx(direction.dot(direction).item(), rel=1e-5)
    assert abs(top.dot(direction)).item() == pytest.approx(direction.norm().item(), rel=1e-5)
