"""Fine-tuning of null-expert routers on calibration text, base model frozen.

Each step runs the model over a batch of windows with every MoE layer routed by its null-expert router. The
loss is next-token cross-entropy + w x the mean over layers of the AdaMoE balance loss. With a target for
the average number of real experts per token, each layer's null bias then moves after every step by a
step proportional to (its average real experts - target). It moves up when the layer uses too many real
experts, so null experts win more slots, and down when it uses too few.

Shapes: N windows, B windows per step, T tokens, L MoE layers.
"""

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from leanlm.errors import InvalidArgumentError
from leanlm.moe.adamoe.router import AdaMoERouters
from leanlm.runtime.moe import moe_runtime
from leanlm.training import train_steps

logger = logging.getLogger(__name__)


@dataclass
class AdaMoETrainConfig:
    target_real: float | None = None  # average real experts per token and layer; None leaves it to the loss
    steps: int = 200
    batch: int = 4  # windows per step
    learning_rate: float = 1e-3
    balance_weight: float = 0.01  # w in the loss above
    # null-bias step per step and per real expert of error, in units of the layer's logit standard deviation
    bias_rate: float = 0.02
    checkpoint_every: int = 20

    def __post_init__(self) -> None:
        for name in ("target_real", "learning_rate", "balance_weight", "bias_rate"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise InvalidArgumentError(f"{name} must be a finite number, got {value}")
        if self.target_real is not None and self.target_real < 0:
            raise InvalidArgumentError(f"target_real must be 0 or more, got {self.target_real}")
        if self.steps < 0 or self.batch < 1 or self.checkpoint_every < 1:
            raise InvalidArgumentError(
                f"need steps >= 0, batch >= 1 and checkpoint_every >= 1, got {self.steps}, {self.batch}, "
                f"{self.checkpoint_every}"
            )
        if self.learning_rate <= 0 or self.balance_weight < 0 or self.bias_rate < 0:
            raise InvalidArgumentError(
                "learning_rate must be positive and balance_weight and bias_rate 0 or more, got "
                f"{self.learning_rate}, {self.balance_weight}, {self.bias_rate}"
            )


@dataclass
class StepStats:
    loss: float
    cross_entropy: float
    balance: float  # mean over layers
    avg_real_experts: float  # per token, mean over layers


def train_routers(
    model: PreTrainedModel,
    routers: AdaMoERouters,
    windows: torch.Tensor,
    config: AdaMoETrainConfig,
    *,
    checkpoint_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[StepStats]:
    """Train the routers on calibration windows [N, T]; return each step's figures, resumed ones included.

    A checkpoint is written every `checkpoint_every` steps, at the end, and when Ctrl-C interrupts a step.
    """
    trainable = [p for p in routers.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=config.learning_rate)

    def step_loss(step: int):
        batch = _batch(windows, step, config.batch).to(model.device)  # [B, T]
        return adamoe_loss(model, routers, batch, config.balance_weight)

    def steer() -> None:
        if config.target_real is not None:
            steer_null_bias(routers, config.target_real, config.bias_rate)

    return train_steps(
        model, routers, optimizer, config.steps, step_loss, StepStats, after_step=steer,
        checkpoint_dir=checkpoint_dir, checkpoint_every=config.checkpoint_every, progress=progress,
    )


def adamoe_loss(model: PreTrainedModel, routers: AdaMoERouters, batch: torch.Tensor, balance_weight: float):
    """Return the loss of windows [B, T] routed by `routers`, and its figures."""
    with moe_runtime(model, policy=routers.policy):
        logits = model(input_ids=batch, use_cache=False).logits.float()  # [B, T, V]
    cross_entropy = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch[:, 1:].flatten())
    balance = routers.mean_balance_loss()
    loss = cross_entropy + balance_weight * balance
    return loss, StepStats(loss.item(), cross_entropy.item(), balance.item(), routers.avg_real_experts())


@torch.no_grad()
def steer_null_bias(routers: AdaMoERouters, target_real: float, rate: float) -> None:
    """Move each layer's null bias toward the target average of real experts seen in the last forward."""
    for router, real_counts, spread in zip(routers.layers, routers.real_counts, routers.logit_spreads):
        error = real_counts.mean().item() - target_real  # > 0: too many real experts, so favour nulls
        router.null_bias.add_(rate * error * spread)


def _batch(windows: torch.Tensor, step: int, size: int) -> torch.Tensor:
    """Return `size` windows [B, T], walking through the N windows in order and wrapping around."""
    index = torch.arange(step * size, (step + 1) * size) % windows.shape[0]
    return windows[index]
