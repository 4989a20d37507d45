"""Training of the gates on calibration text, base model frozen.

Each step runs the model over a window with every layer's attention weighted by its gate's flags: a flag is
1 when the keep probability exceeds 0.5, and its gradient is the probability's (straight-through). The loss is
    next-token cross-entropy + w x mean over layers of (keep rate - target keep rate)^2.
The squared gap pulls a layer's keep rate toward the target from above and from below. (A hinge such as
max(0, rate - target) would leave a layer that keeps too little with no gradient back up.)

Shapes: N windows, T tokens, Hkv KV heads.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from leanlm.errors import InvalidArgumentError
from leanlm.kv.gate.module import AttentionGates
from leanlm.runtime.keep_hooks import keep_decisions_enabled
from leanlm.runtime.kv_attention import kv_attention_enabled
from leanlm.runtime.token_eviction import KeepDecision
from leanlm.training import train_steps

logger = logging.getLogger(__name__)


@dataclass
class GateTrainConfig:
    evict: float = 0.5  # target fraction of prompt tokens each layer evicts
    steps: int = 200
    learning_rate: float = 1e-3
    eviction_weight: float = 10.0  # w in the loss above
    sinks: int = 4  # first tokens of a window that are always kept
    window: int = 64  # recent tokens every query sees whatever their flags
    seed: int = 0
    checkpoint_every: int = 20

    def __post_init__(self) -> None:
        check_evict(self.evict)
        if self.steps < 0:
            raise InvalidArgumentError(f"steps must be >= 0, got {self.steps}")
        if self.learning_rate <= 0:
            raise InvalidArgumentError(f"learning rate must be positive, got {self.learning_rate}")
        if self.eviction_weight < 0:
            raise InvalidArgumentError(f"eviction_weight must be >= 0, got {self.eviction_weight}")
        if self.sinks < 0 or self.window < 1:
            raise InvalidArgumentError(f"need sinks >= 0 and window >= 1, got sinks={self.sinks}, window={self.window}")
        if self.checkpoint_every <= 0:
            raise InvalidArgumentError(f"checkpoint_every must be a positive integer, got {self.checkpoint_every}")


def check_evict(evict: float) -> None:
    if not 0 <= evict < 1:
        raise InvalidArgumentError(f"eviction ratio must lie in [0, 1), got {evict}; 0.5 evicts half the prompt tokens")


@dataclass
class StepStats:
    loss: float
    cross_entropy: float
    keep_rate: float  # mean over layers


def train_gates(
    model: PreTrainedModel,
    gates: AttentionGates,
    windows: torch.Tensor,
    config: GateTrainConfig,
    *,
    checkpoint_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[StepStats]:
    """Train the gates on calibration windows [N, T]; return each step's figures, resumed ones included.

    A checkpoint is written every `checkpoint_every` steps, at the end, and when Ctrl-C interrupts a step.
    """
    optimizer = torch.optim.Adam(gates.parameters(), lr=config.learning_rate)

    def step_loss(step: int):
        window = windows[step % windows.shape[0]].unsqueeze(0).to(model.device)  # [1, T]
        return gate_loss(model, gates, window, config)

    return train_steps(
        model, gates, optimizer, config.steps, step_loss, StepStats,
        checkpoint_dir=checkpoint_dir, checkpoint_every=config.checkpoint_every, progress=progress,
    )


def eviction_loss(keep_rates: torch.Tensor, target_keep: float) -> torch.Tensor:
    """Return the mean over layers of (keep rate - target)^2 for keep rates [L]."""
    return ((keep_rates - target_keep) ** 2).mean()


def gate_loss(model: PreTrainedModel, gates: AttentionGates, window: torch.Tensor, config: GateTrainConfig):
    """Return the loss of one window [B, T] with attention weighted by the gates' flags, and its figures."""
    rates = []

    def straight_through(layer: int, hidden: torch.Tensor, real: torch.Tensor | None) -> KeepDecision:
        probability = torch.sigmoid(gates(layer, hidden, real))  # [B, Hkv, T]
        flags = (probability > 0.5).to(probability.dtype) + probability - probability.detach()
        flags = torch.cat([torch.ones_like(flags[..., : config.sinks]), flags[..., config.sinks :]], dim=-1)
        rates.append(flags[..., config.sinks :].mean())
        return KeepDecision(flags=flags, window=config.window)

    with kv_attention_enabled(model), keep_decisions_enabled(model, straight_through):
        logits = model(input_ids=window, use_cache=False).logits.float()  # [B, T, V]
    cross_entropy = F.cross_entropy(logits[:, :-1].flatten(0, 1), window[:, 1:].flatten())
    keep_rates = torch.stack(rates)  # [L]
    loss = cross_entropy + config.eviction_weight * eviction_loss(keep_rates, 1 - config.evict)
    return loss, StepStats(loss.item(), cross_entropy.item(), keep_rates.mean().item())
