"""The AdaMoE recipe: null-expert routers trained on calibration text, with a report on held-out text."""

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from leanlm.data import token_windows
from leanlm.errors import InvalidArgumentError
from leanlm.models.loader import LoadedModel
from leanlm.moe.adamoe.router import AdaMoERouters, null_expert_routers
from leanlm.moe.adamoe.train import AdaMoETrainConfig, train_routers
from leanlm.runtime.moe import find_moe_layers, moe_runtime

logger = logging.getLogger(__name__)

# stage(description, total) opens a progress display and yields an advance(n) callback
StageProgress = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]

# the stored router scale of a model written by `leanlm moe convert` (see leanlm.moe.granite)
CONVERTED_KIND = "moe-converted-model"


@dataclass
class AdaMoEFitConfig:
    num_null: int = 8
    top_k: int = 6
    target_real: float | None = None  # average real experts per token; None leaves it to the balance loss
    steps: int = 200
    batch: int = 4
    window: int = 256  # calibration tokens per window
    calibration_windows: int = 64  # the last one is held out for the report
    learning_rate: float = 1e-3
    balance_weight: float = 0.01
    bias_rate: float = 0.02

    def __post_init__(self) -> None:
        if self.num_null < 0:
            raise InvalidArgumentError(f"the number of null experts must be 0 or more, got {self.num_null}")
        if self.top_k < 1:
            raise InvalidArgumentError(f"top-k must be 1 or more, got {self.top_k}")
        if self.calibration_windows < 2 or self.window < 2:
            raise InvalidArgumentError(
                f"need at least 2 calibration windows of at least 2 tokens, got {self.calibration_windows} of {self.window}"
            )
        self.train_config()  # checks the training settings
        if self.target_real is not None and not self.top_k - self.num_null <= self.target_real <= self.top_k:
            raise InvalidArgumentError(
                f"target of {self.target_real} real experts per token is out of reach: with top-k {self.top_k} and "
                f"{self.num_null} null experts a token gets from {max(0, self.top_k - self.num_null)} to {self.top_k}; "
                "choose a target in that range"
            )
        if self.steps and self.batch > self.calibration_windows - 1:
            raise InvalidArgumentError(
                f"batch of {self.batch} windows is more than the {self.calibration_windows - 1} training windows "
                "(one calibration window is held out); lower --batch or raise --calibration-windows"
            )

    def train_config(self) -> AdaMoETrainConfig:
        return AdaMoETrainConfig(
            target_real=self.target_real, steps=self.steps, batch=self.batch, learning_rate=self.learning_rate,
            balance_weight=self.balance_weight, bias_rate=self.bias_rate,
        )


def converted_routing(loaded: LoadedModel) -> tuple[float, float | None]:
    """Return the router logit scale and the fixed real-expert weight of `loaded`.

    A model written by `leanlm moe convert` and run at top-k k stores its router scaled by 2**-40 and sums
    its chosen experts, so it gets (2**-40, 1/k). Any other model gets (1, None): unscaled logits and
    renormalised weights.
    """
    if getattr(loaded.model.config, "kind", None) != CONVERTED_KIND:
        return 1.0, None
    from leanlm.moe.granite import ROUTER_SCALE

    return ROUTER_SCALE, 1.0 / loaded.model.config.num_experts_per_tok


def fit_adamoe(
    loaded: LoadedModel, config: AdaMoEFitConfig, *, checkpoint_dir: Path | None = None, stage: StageProgress | None = None
) -> tuple[AdaMoERouters, dict]:
    """Train null-expert routers for `loaded` (an MoE model); return them and a report with held-out figures."""
    stage = stage or _silent_stage
    layers = find_moe_layers(loaded.model)
    real = layers[0].spec.num_experts
    if config.top_k > real + config.num_null:
        raise InvalidArgumentError(f"top-k {config.top_k} exceeds the {real} real + {config.num_null} null experts")
    if config.target_real is not None and config.target_real > real:
        raise InvalidArgumentError(f"target of {config.target_real} real experts per token exceeds the model's {real}")
    windows = token_windows(loaded.tokenizer, "calibration", config.window, config.calibration_windows)
    fit_windows, held_out = windows[:-1], windows[-1:]

    routers = null_expert_routers(loaded.model, config.num_null, config.top_k, *converted_routing(loaded))
    routers.to(loaded.model.device)
    stats = []
    if config.steps:
        with stage("training routers", config.steps) as advance:
            stats = train_routers(
                loaded.model, routers, fit_windows, config.train_config(), checkpoint_dir=checkpoint_dir, progress=advance
            )
    routers.requires_grad_(False)

    last = stats[-10:]
    report = {
        "fit": asdict(config),
        "base_top_k": layers[0].spec.top_k,
        "calibration_tokens": int(fit_windows.numel()),
        "train_cross_entropy_first": stats[0].cross_entropy if stats else None,
        "train_cross_entropy_last": _mean([s.cross_entropy for s in last]),
        "train_avg_real_experts_last": _mean([s.avg_real_experts for s in last]),
        "held_out": held_out_figures(loaded, routers, held_out),
    }
    return routers, report


def held_out_figures(loaded: LoadedModel, routers: AdaMoERouters, windows: torch.Tensor) -> dict:
    """Return perplexity of the base routing and of AdaMoE on windows [N, T], and AdaMoE's real experts."""
    model = loaded.model
    windows = windows.to(model.device)
    with torch.inference_mode():
        base = _nll(model(input_ids=windows, use_cache=False).logits, windows)
        with moe_runtime(model, policy=routers.policy):
            adamoe = _nll(model(input_ids=windows, use_cache=False).logits, windows)
    return {"base_ppl": math.exp(base), "adamoe_ppl": math.exp(adamoe), "avg_real_experts": routers.avg_real_experts()}


def _nll(logits: torch.Tensor, windows: torch.Tensor) -> float:
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), windows[:, 1:].flatten()).item()


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


@contextmanager
def _silent_stage(name: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda n=1: None
