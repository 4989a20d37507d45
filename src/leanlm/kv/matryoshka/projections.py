"""Trainable orthogonal projections of MatryoshkaKV, one key basis and one value basis per (layer, KV head).

Each basis is U = U0 C(A): U0 is the PCA basis and C(A) = (I + A)^-1 (I - A) the Cayley transform of a
skew-symmetric A = S - S^T. C(A) is orthogonal for any S, so U stays orthogonal through training with no
re-orthogonalisation, and S = 0 gives back the PCA basis. One basis serves all query heads of its KV
head's group, so the cache keeps one entry per KV head, not per query head.

Shapes: L layers, Hkv KV heads, D head dim, R rank.
"""

import torch
from torch import nn

from leanlm.kv.matryoshka.pca import PCABases
from leanlm.kv.matryoshka.ranks import RankPlan
from leanlm.runtime.projected_cache import HeadProjection


def cayley(skew_params: torch.Tensor) -> torch.Tensor:
    """Return the orthogonal Cayley transform of A = S - S^T for S [..., D, D]."""
    a = skew_params - skew_params.transpose(-1, -2)
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device).expand_as(a)
    return torch.linalg.solve(eye + a, eye - a)


class MatryoshkaProjections(nn.Module):
    def __init__(self, pca: PCABases):
        super().__init__()
        L, H, D, _ = pca.key_basis.shape
        self.register_buffer("key_basis0", pca.key_basis.clone())  # [L, Hkv, D, D]
        self.register_buffer("value_basis0", pca.value_basis.clone())
        self.register_buffer("key_mean", pca.key_mean.clone())  # [L, Hkv, D]
        self.register_buffer("value_mean", pca.value_mean.clone())
        self.key_skew = nn.Parameter(torch.zeros(L, H, D, D))
        self.value_skew = nn.Parameter(torch.zeros(L, H, D, D))

    @property
    def shape(self) -> tuple[int, int, int]:
        L, H, D, _ = self.key_basis0.shape
        return L, H, D

    def bases(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the current orthogonal key and value bases [L, Hkv, D, D]."""
        return self.key_basis0 @ cayley(self.key_skew), self.value_basis0 @ cayley(self.value_skew)

    def head_projections(self, plan: RankPlan, bases: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[HeadProjection]:
        """Cut each head's basis to its planned rank; one `HeadProjection` per layer for the projected cache."""
        key_basis, value_basis = bases if bases is not None else self.bases()
        L, H, _ = self.shape
        projections = []
        for layer in range(L):
            projections.append(
                HeadProjection(
                    key_bases=[key_basis[layer, h, :, : int(plan.key_ranks[layer, h])] for h in range(H)],
                    key_means=self.key_mean[layer],
                    value_bases=[value_basis[layer, h, :, : int(plan.value_ranks[layer, h])] for h in range(H)],
                    value_means=self.value_mean[layer],
                )
            )
        return projections

    @torch.no_grad()
    def frozen(self) -> "MatryoshkaProjections":
        """Fold the Cayley factors into the bases once, for inference: S becomes zero."""
        key_basis, value_basis = self.bases()
        self.key_basis0.copy_(key_basis)
        self.value_basis0.copy_(value_basis)
        self.key_skew.zero_()
        self.value_skew.zero_()
        return self
