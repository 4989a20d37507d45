"""Balanced co-activation clustering: exact sizes, full coverage, planted groups recovered."""

import pytest
import torch

from leanlm.errors import InvalidArgumentError
from leanlm.moe.clustering import balanced_assignment, balanced_kmeans, co_activation_groups


def planted_activations(groups: int, size: int, tokens_per_group: int = 12, seed: int = 0):
    """Return activations [N, I] where group g's neurons fire only on token block g, and the true groups."""
    generator = torch.Generator().manual_seed(seed)
    neurons = groups * size
    activations = 0.01 * torch.randn(groups * tokens_per_group, neurons, generator=generator)
    order = torch.randperm(neurons, generator=generator)
    true_groups = order.reshape(groups, size)
    for group, members in enumerate(true_groups):
        rows = slice(group * tokens_per_group, (group + 1) * tokens_per_group)
        signs = torch.randn(tokens_per_group, size, generator=generator).sign()
        activations[rows, members] = signs * (1 + torch.rand(tokens_per_group, size, generator=generator))
    return activations, true_groups


@pytest.mark.parametrize(("neurons", "experts"), [(128, 8), (96, 3), (64, 64), (40, 1)])
def test_groups_balanced_and_cover(neurons, experts):
    activations = torch.randn(30, neurons, generator=torch.Generator().manual_seed(neurons))

    groups = co_activation_groups(activations, experts, iterations=10)

    assert groups.shape == (experts, neurons // experts)
    assert torch.equal(groups.flatten().sort().values, torch.arange(neurons))
    assert torch.equal(groups, groups.sort(dim=-1).values)


def test_planted_groups_recovered():
    activations, true_groups = planted_activations(groups=6, size=10)

    groups = co_activation_groups(activations, 6)

    found = {tuple(row.tolist()) for row in groups}
    expected = {tuple(row.sort().values.tolist()) for row in true_groups}
    assert found == expected


def test_same_seed_same_groups():
    activations = torch.randn(20, 64, generator=torch.Generator().manual_seed(5))

    first = co_activation_groups(activations, 4, seed=3)
    second = co_activation_groups(activations, 4, seed=3)

    assert torch.equal(first, second)


def test_assignment_respects_capacity():
    # every row prefers column 0, so all but two rows must go elsewhere
    similarity = torch.tensor([[1.0, 0.5, 0.1]] * 6) + torch.arange(6.0)[:, None] * 0.01

    assignment = balanced_assignment(similarity, capacity=2)

    assert torch.bincount(assignment, minlength=3).tolist() == [2, 2, 2]
    assert set((assignment == 0).nonzero().flatten().tolist()) == {4, 5}
    assert set((assignment == 1).nonzero().flatten().tolist()) == {2, 3}


def test_identical_neurons_still_split():
    features = torch.nn.functional.normalize(torch.ones(12, 5), dim=-1)

    groups = balanced_kmeans(features, 3)

    assert torch.equal(groups.flatten().sort().values, torch.arange(12))


@pytest.mark.parametrize("experts", [0, 7, -2, 3.0])
def test_bad_expert_count(experts):
    with pytest.raises(InvalidArgumentError, match="experts"):
        co_activation_groups(torch.randn(4, 20), experts)


def test_indivisible_count_lists_divisors():
    with pytest.raises(InvalidArgumentError, match=r"experts=3 does not divide .* size 20, .* use one of 2, 4, 5, 10, 20$"):
        co_activation_groups(torch.randn(4, 20), 3)
