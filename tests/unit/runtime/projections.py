"""Random projections for the projected-cache tests."""

import torch

from leanlm.runtime.projected_cache import HeadProjection


def random_projections(
    key_ranks: list[list[int]], value_ranks: list[list[int]], seed: int, head_dim: int = 16
) -> list[HeadProjection]:
    """Return random orthogonal bases (QR of a Gaussian matrix) cut to the given [L][Hkv] ranks, with random means."""
    generator = torch.Generator().manual_seed(seed)

    def basis(rank: int) -> torch.Tensor:
        orthogonal, _ = torch.linalg.qr(torch.randn(head_dim, head_dim, generator=generator))
        return orthogonal[:, :rank]

    return [
        HeadProjection(
            key_bases=[basis(rank) for rank in layer_key_ranks],
            key_means=torch.randn(len(layer_key_ranks), head_dim, generator=generator),
            value_bases=[basis(rank) for rank in layer_value_ranks],
            value_means=torch.randn(len(layer_value_ranks), head_dim, generator=generator),
        )
        for layer_key_ranks, layer_value_ranks in zip(key_ranks, value_ranks)
    ]
