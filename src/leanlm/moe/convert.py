"""Convert a dense Llama into a GraniteMoe checkpoint: split each MLP by co-activation, fit a router per layer.

Calibration windows come from the calibration split only. The last window is held out of clustering and
router fitting and measures, per layer, how much of the dense MLP's output the routed top-k experts keep.

NOTE: each router is fitted on the dense model's MLP inputs. At K < E the converted model drops part of every
MLP output, so the inputs of later layers drift from those the routers saw, and nothing here corrects for it
(no fine-tuning, no layer-by-layer refit).

Shapes: N calibration tokens, C model dim, I intermediate size, E experts, K top-k, G = I / E.
"""

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass

import torch
from transformers import GraniteMoeForCausalLM

from leanlm.data import token_windows
from leanlm.errors import InvalidArgumentError
from leanlm.models.loader import LoadedModel
from leanlm.moe.clustering import check_expert_count, co_activation_groups
from leanlm.moe.dense import (
    check_llama,
    collect_mlp_inputs,
    expert_output_norms,
    intermediate_activations,
    kept_output_error,
    mlp_layers,
)
from leanlm.moe.granite import ROUTER_SCALE, build_granite, check_top_k
from leanlm.moe.router_fit import captured_mass, fit_router, top_k_mask

logger = logging.getLogger(__name__)

# (stage name, total units) -> context manager yielding an advance(n) callback
StageProgress = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


@dataclass
class ConvertConfig:
    experts: int = 16
    top_k: int = 4
    window: int = 256  # calibration tokens per window
    calibration_windows: int = 16  # the last one is held out to measure the routers
    kmeans_iterations: int = 30
    router_steps: int = 0  # Adam steps after the least-squares fit; 0 keeps the least-squares router
    router_learning_rate: float = 1e-2
    batch_size: int = 4  # calibration windows per forward pass
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.experts, bool) or not isinstance(self.experts, int) or self.experts < 1:
            raise InvalidArgumentError(f"experts must be a positive integer, got {self.experts!r}")
        check_top_k(self.top_k, self.experts)
        _check_at_least("window", self.window, 2)
        _check_at_least("calibration_windows", self.calibration_windows, 2)
        _check_at_least("kmeans_iterations", self.kmeans_iterations, 1)
        _check_at_least("router_steps", self.router_steps, 0)
        _check_at_least("batch_size", self.batch_size, 1)
        if not self.router_learning_rate > 0:
            raise InvalidArgumentError(f"router_learning_rate must be positive, got {self.router_learning_rate}")


def _check_at_least(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgumentError(f"{name} must be an integer of at least {minimum}, got {value!r}")


def check_convertible(loaded: LoadedModel, config: ConvertConfig) -> None:
    """Raise InvalidArgumentError unless `loaded` is a Llama whose intermediate size `config.experts` divides."""
    check_llama(loaded.model)
    check_expert_count(loaded.model.config.intermediate_size, config.experts)


def convert_to_moe(
    loaded: LoadedModel, config: ConvertConfig, *, stage: StageProgress | None = None
) -> tuple[GraniteMoeForCausalLM, dict]:
    """Split every MLP of `loaded` into experts and fit its router; return the GraniteMoe model and a report.

    The dense model is left unchanged.
    """
    stage = stage or _silent_stage
    check_convertible(loaded, config)
    started = time.perf_counter()
    model = loaded.model
    windows = token_windows(loaded.tokenizer, "calibration", config.window, config.calibration_windows)
    if windows.shape[0] < 2:
        raise InvalidArgumentError(
            f"the calibration split has only {windows.shape[0]} window of {config.window} tokens, but the conversion "
            "needs at least 2 (one is held out); use a shorter window"
        )

    with stage("calibration", windows.shape[0]) as advance:
        inputs = collect_mlp_inputs(model, windows, batch_size=config.batch_size, progress=advance)  # L x [N, C]
    held_out_tokens = windows.shape[1]

    groups, routers, layers = [], [], []
    with stage("experts", len(inputs)) as advance:
        for index, (mlp, layer_inputs) in enumerate(zip(mlp_layers(model), inputs, strict=True)):
            fit_inputs, held_inputs = layer_inputs[:-held_out_tokens], layer_inputs[-held_out_tokens:]
            neurons, router, measured = _convert_layer(mlp, fit_inputs, held_inputs, config)
            groups.append(neurons)
            routers.append(router)
            layers.append({"layer": index} | measured)
            advance(1)
    moe = build_granite(model, groups, routers, config.top_k)

    report = _report(config, layers, windows, held_out_tokens, time.perf_counter() - started)
    logger.info(
        "converted %d layers into %d experts (top-%d): held-out router capture %.3f, oracle %.3f",
        len(layers), config.experts, config.top_k, report["capture_router_mean"], report["capture_oracle_mean"],
    )
    return moe, report


def _convert_layer(
    mlp, fit_inputs: torch.Tensor, held_inputs: torch.Tensor, config: ConvertConfig
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    device = mlp.gate_proj.weight.device

    # cluster neurons by co-activation and fit the router on the calibration tokens
    activations = intermediate_activations(mlp, fit_inputs)  # [N, I]
    neurons = co_activation_groups(activations, config.experts, iterations=config.kmeans_iterations, seed=config.seed)
    mass = expert_output_norms(mlp, activations, neurons)  # [N, E]
    fit = fit_router(
        fit_inputs.to(device), mass, steps=config.router_steps, learning_rate=config.router_learning_rate
    )
    del activations, mass

    # measure on the held-out window what the routed experts keep of the dense output
    held_activations = intermediate_activations(mlp, held_inputs)  # [N, I]
    held_mass = expert_output_norms(mlp, held_activations, neurons)  # [N, E]
    logits = held_inputs.to(device) @ fit.weight.T  # [N, E]
    measured = {
        "capture_router": captured_mass(logits, held_mass, config.top_k),
        "capture_oracle": captured_mass(held_mass, held_mass, config.top_k),
        "output_error_router": kept_output_error(mlp, held_activations, neurons, top_k_mask(logits, config.top_k)),
        "output_error_oracle": kept_output_error(mlp, held_activations, neurons, top_k_mask(held_mass, config.top_k)),
        "router_loss_start": fit.loss_start,
        "router_loss_end": fit.loss_end,
        "router_logit_max_abs": logits.abs().max().item(),
    }
    return neurons, fit.weight, measured


def _report(config: ConvertConfig, layers: list[dict], windows: torch.Tensor, held_out_tokens: int, seconds: float) -> dict:
    def mean(key: str) -> float:
        return sum(layer[key] for layer in layers) / len(layers)

    return {
        "convert": asdict(config),
        "router_scale": ROUTER_SCALE,
        "calibration_tokens": int(windows.numel()) - held_out_tokens,
        "held_out_tokens": held_out_tokens,
        "capture_router_mean": mean("capture_router"),
        "capture_oracle_mean": mean("capture_oracle"),
        "output_error_router_mean": mean("output_error_router"),
        "output_error_oracle_mean": mean("output_error_oracle"),
        "conversion_seconds": seconds,
        "layers": layers,
    }


@contextmanager
def _silent_stage(name: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda n=1: None
