"""The Attention-Gate recipe: train gates on calibration windows and return the method with its report.

The last calibration window is held out of training and returned, so the caller can measure the fitted gate
on text it never saw (the CLI records that perplexity in the artifact's report).
"""

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from leanlm.data import token_windows
from leanlm.errors import InvalidArgumentError
from leanlm.kv.gate.method import AttentionGateKV
from leanlm.kv.gate.module import AttentionGates
from leanlm.kv.gate.train import GateTrainConfig, train_gates
from leanlm.models.loader import LoadedModel

logger = logging.getLogger(__name__)

# (stage name, total units) -> context manager yielding an advance(n) callback
StageProgress = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


@dataclass
class GateFitConfig:
    evict: float = 0.5
    steps: int = 200
    window: int = 512  # calibration tokens per training window, as in MatryoshkaKV's FitConfig
    calibration_windows: int = 32
    gate_dim: int = 16
    sinks: int = 4
    recent: int = 64  # the gate's recent window: last prompt tokens always kept
    learning_rate: float = 1e-3
    eviction_weight: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.calibration_windows < 2:
            raise InvalidArgumentError(f"calibration_windows must be at least 2, got {self.calibration_windows}")
        if self.gate_dim < 1:
            raise InvalidArgumentError(f"gate_dim must be a positive integer, got {self.gate_dim}")
        if self.window < 2 * (self.sinks + self.recent):
            raise InvalidArgumentError(
                f"calibration windows of {self.window} tokens are too short to train eviction: half of them must "
                f"hold the {self.sinks} sink and {self.recent} recent tokens that are always kept; use at least "
                f"{2 * (self.sinks + self.recent)} tokens"
            )
        self.train_config()  # validates the training fields

    def train_config(self) -> GateTrainConfig:
        return GateTrainConfig(
            evict=self.evict, steps=self.steps, learning_rate=self.learning_rate, eviction_weight=self.eviction_weight,
            sinks=self.sinks, window=self.recent, seed=self.seed,
        )


def fit_gate(
    loaded: LoadedModel, config: GateFitConfig, *, checkpoint_dir: Path | None = None, stage: StageProgress | None = None
) -> tuple[AttentionGateKV, dict, torch.Tensor]:
    """Train gates for `config.evict`; return the method, its report and the held-out window [1, T]."""
    stage = stage or _silent_stage
    model = loaded.model
    windows = token_windows(loaded.tokenizer, "calibration", config.window, config.calibration_windows)
    fit_windows, held_out = windows[:-1], windows[-1:]

    model_config = model.config
    torch.manual_seed(config.seed)
    gates = AttentionGates(
        model_config.num_hidden_layers, model_config.hidden_size, model_config.num_key_value_heads, config.gate_dim,
        initial_keep=1 - config.evict if config.evict > 0 else 0.5,
    ).to(model.device)

    stats = []
    if config.steps:
        with stage("training", config.steps) as advance:
            stats = train_gates(model, gates, fit_windows, config.train_config(), checkpoint_dir=checkpoint_dir, progress=advance)
    gates.requires_grad_(False)
    method = AttentionGateKV(gates=gates, evict=config.evict, sinks=config.sinks, window=config.recent)

    last = stats[-10:]
    report = {
        "fit": asdict(config),
        "calibration_tokens": int(fit_windows.numel()),
        "train_cross_entropy_first": stats[0].cross_entropy if stats else None,
        "train_cross_entropy_last": sum(s.cross_entropy for s in last) / len(last) if last else None,
        "train_keep_rate_last": sum(s.keep_rate for s in last) / len(last) if last else None,
    }
    if last:
        logger.info("Attention-Gate fitted: keep rate %.3f over the last %d steps", report["train_keep_rate_last"], len(last))
    return method, report, held_out


@contextmanager
def _silent_stage(name: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda n=1: None
