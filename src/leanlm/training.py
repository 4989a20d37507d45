"""Pieces every training loop shares: a frozen base model, and resumable checkpoints.

Checkpoints hold the parameters, Adam's moments and the step. Files are safetensors and JSON, each written
to a temporary name and renamed, so an interrupted write leaves the previous checkpoint intact.
"""

import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from leanlm.errors import ArtifactError

logger = logging.getLogger(__name__)

CHECKPOINT_TENSORS = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint.json"


@contextmanager
def frozen_model(model: torch.nn.Module) -> Iterator[None]:
    """Turn off gradients of every model parameter inside the block, then restore each one's setting."""
    previous = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, requires_grad in zip(model.parameters(), previous):
            parameter.requires_grad_(requires_grad)


def save_checkpoint(
    directory: Path, module: torch.nn.Module, optimizer: torch.optim.Adam, step: int, history: list | None = None
) -> None:
    """Write the trainable parameters, Adam's moments, the step and the per-step figures so far (JSON-ready),
    each file replaced atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: p.detach().clone() for name, p in module.named_parameters()}
    for name, parameter in module.named_parameters():
        state = optimizer.state.get(parameter, {})
        for moment in ("exp_avg", "exp_avg_sq"):
            if moment in state:
                tensors[f"adam.{name}.{moment}"] = state[moment]
    adam_step = next((float(s["step"]) for s in optimizer.state.values() if "step" in s), 0.0)

    tmp = directory / f".{CHECKPOINT_TENSORS}.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, directory / CHECKPOINT_TENSORS)
    tmp = directory / f".{CHECKPOINT_STATE}.tmp"
    tmp.write_text(json.dumps({"step": step, "adam_step": adam_step, "history": history or []}))
    os.replace(tmp, directory / CHECKPOINT_STATE)
    logger.info("checkpoint at step %d in %s", step, directory)


def resume_checkpoint(directory: Path, module: torch.nn.Module, optimizer: torch.optim.Adam) -> tuple[int, list]:
    """Load the parameters and Adam's moments of the last checkpoint in `directory`.

    Return the checkpoint's step and its per-step figures, or 0 and [] when the directory has no checkpoint.
    """
    if not (directory / CHECKPOINT_STATE).is_file():
        return 0, []
    state = json.loads((directory / CHECKPOINT_STATE).read_text())
    tensors = load_file(str(directory / CHECKPOINT_TENSORS))
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            stored = tensors.get(name)
            if stored is None or stored.shape != parameter.shape:
                raise ArtifactError(
                    f"the checkpoint in {directory} does not match this training run (parameter {name}); "
                    "delete the directory to start over, or pass another output path"
                )
            parameter.copy_(stored)
            moments = {m: tensors[f"adam.{name}.{m}"] for m in ("exp_avg", "exp_avg_sq") if f"adam.{name}.{m}" in tensors}
            if moments:
                optimizer.state[parameter] = moments | {"step": torch.tensor(state["adam_step"])}
    logger.info("resuming training at step %d from %s", state["step"], directory)
    return int(state["step"]), list(state.get("history", []))


@contextmanager
def checkpoint_on_interrupt(save: Callable[[], None]) -> Iterator[None]:
    """Call `save` when the block is interrupted (Ctrl-C), then let the interrupt go on."""
    try:
        yield
    except KeyboardInterrupt:
        save()
        raise


def train_steps(
    model: torch.nn.Module,
    module: torch.nn.Module,
    optimizer: torch.optim.Adam,
    steps: int,
    step_loss: Callable[[int], tuple[torch.Tensor, Any]],
    stats_type: type,
    *,
    after_step: Callable[[], None] | None = None,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = 20,
    progress: Callable[[int], None] | None = None,
) -> list:
    """Train `module` with `model` frozen; return every step's figures, resumed ones included.

    `step_loss(step)` returns the loss to minimise and the step's figures, a dataclass of `stats_type`.
    `after_step` runs after each optimiser step. A checkpoint is written every `checkpoint_every` steps,
    at the end, and when Ctrl-C interrupts a step, and a rerun with the same `checkpoint_dir` resumes.
    """
    start, history = resume_checkpoint(checkpoint_dir, module, optimizer) if checkpoint_dir else (0, [])
    stats = [stats_type(**row) for row in history]
    if progress and start:
        progress(start)

    def save() -> None:
        if checkpoint_dir:
            save_checkpoint(checkpoint_dir, module, optimizer, len(stats), [asdict(s) for s in stats])

    with frozen_model(model), checkpoint_on_interrupt(save):
        for step in range(start, steps):
            loss, step_stats = step_loss(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step()
            stats.append(step_stats)
            if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
                save()
            if progress:
                progress(1)
    return stats
