"""Split an MLP's neurons into equal-sized experts by co-activation: balanced spherical k-means.

Each neuron is described by the magnitudes |a| of its activation over the calibration tokens, normalised to
unit length, so two neurons are close when they fire strongly on the same tokens. Neurons that fire together
land in one expert, which lets a router that picks a few experts per token keep most of the MLP's output.

Shapes: I neurons (intermediate size), N calibration tokens, E experts, G = I / E neurons per expert.
"""

import logging

import torch
import torch.nn.functional as F

from leanlm.errors import InvalidArgumentError

logger = logging.getLogger(__name__)


def check_expert_count(intermediate_size: int, experts: int) -> None:
    """Raise InvalidArgumentError unless `experts` is at least 1 and divides `intermediate_size`."""
    if isinstance(experts, bool) or not isinstance(experts, int) or experts < 1:
        raise InvalidArgumentError(f"experts must be a positive integer, got {experts!r}")
    if intermediate_size % experts:
        divisors = [d for d in range(2, min(intermediate_size, 256) + 1) if intermediate_size % d == 0]
        raise InvalidArgumentError(
            f"experts={experts} does not divide the MLP's intermediate size {intermediate_size}, so the experts "
            f"cannot be equal in size; use one of {', '.join(map(str, divisors))}"
        )


def co_activation_groups(activations: torch.Tensor, experts: int, *, iterations: int = 30, seed: int = 0) -> torch.Tensor:
    """Cluster the neurons of activations [N, I] into `experts` groups of I / E neurons each.

    Returns a LongTensor [E, G] whose rows contain sorted neuron indices; every neuron appears exactly once.
    """
    check_expert_count(activations.shape[1], experts)
    features = F.normalize(activations.abs().T.float().cpu(), dim=-1)  # [I, N]
    return balanced_kmeans(features, experts, iterations=iterations, seed=seed)


def balanced_kmeans(features: torch.Tensor, clusters: int, *, iterations: int = 30, seed: int = 0) -> torch.Tensor:
    """Spherical k-means on unit-length rows of `features` [I, D], with every cluster holding exactly I / E rows.

    Each step assigns rows to centroids under the size limit (`balanced_assignment`), then moves each centroid
    to the normalised mean of its rows. It stops when no row changes cluster, or after `iterations` steps.
    Returns a LongTensor [E, G] of sorted row indices.
    """
    check_expert_count(features.shape[0], clusters)
    features = features.float().cpu()
    generator = torch.Generator().manual_seed(seed)
    centroids = _kmeans_plus_plus(features, clusters, generator)  # [E, D]
    assignment = None
    for step in range(max(iterations, 1)):
        new_assignment = balanced_assignment(features @ centroids.T, features.shape[0] // clusters)  # [I]
        if assignment is not None and torch.equal(new_assignment, assignment):
            break
        assignment = new_assignment
        centroids = _centroids(features, assignment, clusters)
    logger.debug("balanced k-means: %d clusters after %d steps", clusters, step + 1)
    return torch.stack([(assignment == c).nonzero().flatten() for c in range(clusters)])


def balanced_assignment(similarity: torch.Tensor, capacity: int) -> torch.Tensor:
    """Assign each row of `similarity` [I, E] to one column, with exactly `capacity` rows per column.

    Rounds of proposals: each unassigned row proposes to its most similar column that still has room, and each
    column accepts its most similar proposers up to its remaining room. A row rejected by a full column proposes
    to its next choice in the following round. Needs I == E * capacity. Returns column indices [I].
    """
    rows, columns = similarity.shape
    assert rows == columns * capacity, f"{rows} rows cannot fill {columns} columns of {capacity}"
    assignment = torch.full((rows,), -1, dtype=torch.long)
    room = torch.full((columns,), capacity, dtype=torch.long)
    open_scores = similarity.float().cpu().clone()
    while (assignment < 0).any():
        open_scores[:, room == 0] = -torch.inf
        unassigned = (assignment < 0).nonzero().flatten()
        choices = open_scores[unassigned].argmax(dim=-1)  # [U]
        for column in choices.unique().tolist():
            proposers = unassigned[choices == column]
            best = similarity[proposers, column].argsort(descending=True)[: int(room[column])]
            assignment[proposers[best]] = column
            room[column] -= len(best)
    return assignment


def _kmeans_plus_plus(features: torch.Tensor, clusters: int, generator: torch.Generator) -> torch.Tensor:
    """Pick `clusters` distinct rows as initial centroids, each drawn with weight 1 - max cosine to those chosen."""
    rows = features.shape[0]
    chosen = [int(torch.randint(rows, (1,), generator=generator))]
    closest = features @ features[chosen[0]]  # [I]
    for _ in range(clusters - 1):
        weights = (1 - closest).clamp(min=0)
        weights[chosen] = 0
        if weights.sum() <= 0:  # every row is identical to a chosen one: take any unchosen row
            weights = torch.ones(rows)
            weights[chosen] = 0
        pick = int(torch.multinomial(weights, 1, generator=generator))
        chosen.append(pick)
        closest = torch.maximum(closest, features @ features[pick])
    return features[chosen].clone()


def _centroids(features: torch.Tensor, assignment: torch.Tensor, clusters: int) -> torch.Tensor:
    members = F.one_hot(assignment, clusters).T.to(features.dtype)  # [E, I]
    return F.normalize(members @ features, dim=-1)  # [E, D]
