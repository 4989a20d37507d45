"""Matryoshka training of the projections: any prefix of each basis should work on its own.

The base model is frozen. Each step draws a rank per (layer, KV head) from {D/8, ..., D}, separately for
keys and values, runs the model over a projected cache at those ranks, and minimises
    a x KL(full-cache model || projected model) + (1 - a) x next-token cross-entropy.
Only the Cayley parameters of the bases train, so the bases stay orthogonal. Checkpoints (safetensors and
JSON, written atomically) let an interrupted run resume where it stopped.

Shapes: N windows, T tokens, V vocabulary, L layers, Hkv KV heads.
"""

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from leanlm.errors import InvalidArgumentError
from leanlm.kv.matryoshka.positions import offset_positions
from leanlm.kv.matryoshka.projections import MatryoshkaProjections
from leanlm.kv.matryoshka.ranks import RankPlan, rank_set
from leanlm.runtime.kv_attention import kv_attention_enabled
from leanlm.runtime.projected_cache import ProjectedCache
from leanlm.training import (
    checkpoint_on_interrupt,
    frozen_model,
    resume_checkpoint,
    save_checkpoint,
)

logger = logging.getLogger(__name__)

@dataclass
class TrainConfig:
    steps: int = 100
    learning_rate: float = 1e-3
    kl_weight: float = 0.9  # a in a x KL + (1 - a) x cross-entropy
    seed: int = 0
    checkpoint_every: int = 20

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise InvalidArgumentError(f"steps must be >= 0, got {self.steps}")
        if self.learning_rate <= 0:
            raise InvalidArgumentError(f"learning rate must be positive, got {self.learning_rate}")
        if not 0 <= self.kl_weight <= 1:
            raise InvalidArgumentError(f"kl_weight must lie in [0, 1], got {self.kl_weight}")
        if self.checkpoint_every <= 0:
            raise InvalidArgumentError(f"checkpoint_every must be a positive integer, got {self.checkpoint_every}")


def train_projections(
    model: PreTrainedModel,
    projections: MatryoshkaProjections,
    windows: torch.Tensor,
    config: TrainConfig,
    *,
    checkpoint_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[float]:
    """Train the projections' Cayley parameters on calibration windows [N, T]; return the loss per step,
    resumed steps included.

    A checkpoint is written every `checkpoint_every` steps, at the end, and when Ctrl-C interrupts a step.
    """
    optimizer = torch.optim.Adam(projections.parameters(), lr=config.learning_rate)
    start, losses = resume_checkpoint(checkpoint_dir, projections, optimizer) if checkpoint_dir else (0, [])
    generator = torch.Generator().manual_seed(config.seed + start)
    if progress and start:
        progress(start)

    def save() -> None:
        if checkpoint_dir:
            save_checkpoint(checkpoint_dir, projections, optimizer, len(losses), losses)

    with frozen_model(model), checkpoint_on_interrupt(save):
        for step in range(start, config.steps):
            window = windows[step % windows.shape[0]].unsqueeze(0).to(model.device)  # [1, T]
            plan = random_plan(projections, generator)
            positions = offset_positions(model, window.shape[1], generator)
            loss = _step(model, projections, window, positions, plan, config.kl_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                save()
            if progress:
                progress(1)
    return losses


def random_plan(projections: MatryoshkaProjections, generator: torch.Generator) -> RankPlan:
    """Draw a Matryoshka rank per (layer, KV head), separately for keys and values."""
    L, H, D = projections.shape
    ranks = torch.tensor(rank_set(D))
    key = ranks[torch.randint(len(ranks), (L, H), generator=generator)]
    value = ranks[torch.randint(len(ranks), (L, H), generator=generator)]
    return RankPlan(key_ranks=key, value_ranks=value, head_dim=D)


def _step(model, projections: MatryoshkaProjections, window, positions, plan: RankPlan, kl_weight: float):
    with torch.no_grad():
        teacher = model(input_ids=window, position_ids=positions, use_cache=False).logits.float()  # [1, T, V]
        teacher = F.log_softmax(teacher, dim=-1)

    cache = ProjectedCache(projections.head_projections(plan))
    with kv_attention_enabled(model):
        logits = model(input_ids=window, position_ids=positions, cache=cache, use_cache=True).logits.float()
    student = F.log_softmax(logits, dim=-1)

    kl = F.kl_div(student[0], teacher[0], log_target=True, reduction="batchmean")  # per token
    cross_entropy = F.nll_loss(student[0, :-1], window[0, 1:])
    return kl_weight * kl + (1 - kl_weight) * cross_entropy


def config_dict(config: TrainConfig) -> dict:
    return asdict(config)
