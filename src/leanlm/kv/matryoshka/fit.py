"""The MatryoshkaKV recipe: PCA on calibration text, Matryoshka training, rank search, artifact.

Calibration windows come from the calibration split only; the last one is held out of PCA and training
and scores the rank search.
"""

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from leanlm.data import token_windows
from leanlm.errors import InvalidArgumentError
from leanlm.kv.matryoshka.method import MatryoshkaKV
from leanlm.kv.matryoshka.pca import collect_statistics, pca_bases
from leanlm.kv.matryoshka.projections import MatryoshkaProjections
from leanlm.kv.matryoshka.ranks import check_budget, uniform_plan
from leanlm.kv.matryoshka.search import KLScorer, search_ranks
from leanlm.kv.matryoshka.train import TrainConfig, train_projections
from leanlm.models.loader import LoadedModel

logger = logging.getLogger(__name__)

# (stage name, total units) -> context manager yielding an advance(n) callback
StageProgress = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


@dataclass
class FitConfig:
    budget: float = 0.5
    steps: int = 100  # training steps; 0 keeps the PCA bases
    window: int = 256  # calibration tokens per window
    calibration_windows: int = 32
    search: bool = True  # False gives every head the same rank
    search_tokens: int = 128  # tokens of held-out calibration text that score each rank trial
    search_rounds: int = 10
    learning_rate: float = 1e-3
    kl_weight: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        check_budget(self.budget)
        if self.calibration_windows < 2:
            raise InvalidArgumentError(f"calibration_windows must be at least 2, got {self.calibration_windows}")
        if not 0 < self.search_tokens <= self.window:
            raise InvalidArgumentError(f"search_tokens must lie in (0, window={self.window}], got {self.search_tokens}")


def fit_matryoshka(
    loaded: LoadedModel,
    config: FitConfig,
    *,
    checkpoint_dir: Path | None = None,
    stage: StageProgress | None = None,
) -> tuple[MatryoshkaKV, dict]:
    """Fit projections and ranks for `config.budget`; return the method and its report."""
    stage = stage or _silent_stage
    model = loaded.model
    windows = token_windows(loaded.tokenizer, "calibration", config.window, config.calibration_windows)
    fit_windows, held_out = windows[:-1], windows[-1:, : config.search_tokens]

    with stage("PCA", fit_windows.shape[0]) as advance:
        projections = MatryoshkaProjections(pca_bases(collect_statistics(model, fit_windows, progress=advance)))

    train = TrainConfig(steps=config.steps, learning_rate=config.learning_rate, kl_weight=config.kl_weight, seed=config.seed)
    losses = []
    if config.steps:
        with stage("training", config.steps) as advance:
            losses = train_projections(model, projections, fit_windows, train, checkpoint_dir=checkpoint_dir, progress=advance)
    projections.frozen()

    L, H, D = projections.shape
    score = KLScorer(model, projections, held_out)
    if config.search:
        total = round((1 - config.budget) * 2 * L * H * D / (D // 8))
        with stage("rank search", total) as advance:
            plan = search_ranks(score, L, H, D, [config.budget], rounds=config.search_rounds, progress=advance)[config.budget]
    else:
        plan = uniform_plan(L, H, D, config.budget)

    report = {
        "fit": asdict(config),
        "calibration_tokens": int(fit_windows.numel()),
        "train_loss_first": losses[0] if losses else None,
        "train_loss_last": sum(losses[-10:]) / len(losses[-10:]) if losses else None,
        "plan_budget": plan.budget,
        "held_out_kl": score(plan),
        "key_rank_total": int(plan.key_ranks.sum()),
        "value_rank_total": int(plan.value_ranks.sum()),
    }
    logger.info("MatryoshkaKV fitted: budget %.3f, held-out KL %.4f", plan.budget, report["held_out_kl"])
    return MatryoshkaKV(projections=projections, plan=plan), report


@contextmanager
def _silent_stage(name: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda n=1: None
