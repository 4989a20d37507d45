"""`MatryoshkaProjections`: Cayley-parametrised bases stay orthogonal, start at PCA, and fold on `frozen()`.

Shapes: L layers, Hkv KV heads, D head dim, R rank.
"""

import pytest
import torch

from leanlm.kv.matryoshka.projections import MatryoshkaProjections, cayley
from leanlm.kv.matryoshka.ranks import RankPlan
from leanlm.runtime.kv_attention import kv_attention_enabled
from leanlm.runtime.projected_cache import ProjectedCache

from .helpers import orthogonality_error, train_randomly


def test_zero_skew_gives_pca(pca):
    key_basis, value_basis = MatryoshkaProjections(pca).bases()

    assert torch.allclose(key_basis, pca.key_basis, atol=1e-6)
    assert torch.allclose(value_basis, pca.value_basis, atol=1e-6)


def test_bases_orthogonal_after_training(pca):
    projections = MatryoshkaProjections(pca)
    train_randomly(projections)
    key_basis, value_basis = projections.bases()

    assert projections.key_skew.abs().max().item() > 0.1
    assert projections.value_skew.abs().max().item() > 0.1
    assert (key_basis - pca.key_basis).abs().max().item() > 0.1
    assert orthogonality_error(key_basis) < 1e-5
    assert orthogonality_error(value_basis) < 1e-5


def test_cayley_orthogonal_for_any_parameters():
    skew_params = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(5))

    assert orthogonality_error(cayley(skew_params)) < 1e-5


def test_frozen_keeps_bases_zeroes_skew(pca):
    projections = MatryoshkaProjections(pca)
    train_randomly(projections)
    with torch.no_grad():
        key_before, value_before = projections.bases()

    frozen = projections.frozen()
    key_after, value_after = frozen.bases()

    assert frozen is projections
    assert torch.count_nonzero(frozen.key_skew).item() == 0
    assert torch.count_nonzero(frozen.value_skew).item() == 0
    assert torch.allclose(key_after, key_before, atol=1e-6)
    assert torch.allclose(value_after, value_before, atol=1e-6)


def test_head_projections_cut_to_plan(pca):
    plan = RankPlan(key_ranks=torch.tensor([[4, 8], [12, 16]]), value_ranks=torch.tensor([[16, 12], [8, 4]]), head_dim=16)
    projections = MatryoshkaProjections(pca)
    heads = projections.head_projections(plan)

    assert len(heads) == 2
    assert heads[0].key_ranks == [4, 8]
    assert heads[1].key_ranks == [12, 16]
    assert heads[0].value_ranks == [16, 12]
    assert heads[1].value_ranks == [8, 4]
    assert torch.equal(heads[1].key_bases[0], pca.key_basis[1, 0, :, :12])
    assert torch.equal(heads[1].value_means, pca.value_mean[1])


@pytest.mark.parametrize("side", ["key", "value"])
def test_bases_differentiable(pca, side):
    projections = MatryoshkaProjections(pca)
    key_basis, value_basis = projections.bases()
    basis = key_basis if side == "key" else value_basis
    basis[..., :4].sum().backward()
    gradient = getattr(projections, f"{side}_skew").grad

    assert gradient is not None
    assert gradient.abs().max().item() > 0


def test_cache_gradients_reach_skew(pca, model, windows):
    """A loss on logits computed through a projected cache trains both skew parameters."""
    plan = RankPlan(key_ranks=torch.full((2, 2), 8), value_ranks=torch.full((2, 2), 8), head_dim=16)
    projections = MatryoshkaProjections(pca)
    cache = ProjectedCache(projections.head_projections(plan))

    with kv_attention_enabled(model):
        logits = model(input_ids=windows[:1], cache=cache, use_cache=True).logits
    logits.logsumexp(dim=-1).sum().backward()
    model.zero_grad(set_to_none=True)

    assert projections.key_skew.grad is not None
    assert projections.key_skew.grad.abs().max().item() > 0
    assert projections.value_skew.grad.abs().max().item() > 0
