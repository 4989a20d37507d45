"""Routing traces: every MoE layer's expert ids and weights over a run, saved as one safetensors file.

Per layer the file contains `layer.{i}.experts` [N, K] int16 (-1 for a null slot), `layer.{i}.weights` [N, K]
float32 and `layer.{i}.forward_tokens` [F] int64, the token count of each of the F forward passes, whose rows
follow one another in N. Metadata (strings, as safetensors requires) gives the model name, the number of
experts, the config's top-k and the layers' module names. Padding positions are routed like any token and are
recorded too. No pickle is involved in writing or reading.

Shapes: N tokens over all forwards, K slots per token, F forward passes.
"""

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from leanlm import __version__
from leanlm.errors import InvalidArgumentError
from leanlm.runtime.moe.routing import NULL_EXPERT, MoeLayerSpec, Routing

logger = logging.getLogger(__name__)

TRACE_FORMAT = "leanlm.moe_routing_trace"
TRACE_FORMAT_VERSION = "1"


@dataclass
class RoutingTrace:
    """Recorded routing of a model's MoE layers, keyed by layer index (the block's position among MoE blocks)."""

    model_name: str
    num_experts: int  # E
    top_k: int  # the config's experts per token; a policy may have used another K
    layer_names: dict[int, str]  # layer index -> module path
    experts: dict[int, torch.Tensor]  # layer index -> [N, K] int16, NULL_EXPERT for a null slot
    weights: dict[int, torch.Tensor]  # layer index -> [N, K] float32
    forward_tokens: dict[int, torch.Tensor]  # layer index -> [F] int64 tokens of each forward pass

    def save(self, path: str | Path) -> Path:
        """Write the trace to `path` atomically (temporary file, then rename) and return the path."""
        path = Path(path)
        tensors = {}
        for index in self.layer_names:
            tensors[f"layer.{index}.experts"] = self.experts[index].contiguous()
            tensors[f"layer.{index}.weights"] = self.weights[index].contiguous()
            tensors[f"layer.{index}.forward_tokens"] = self.forward_tokens[index].contiguous()
        metadata = {
            "format": TRACE_FORMAT,
            "format_version": TRACE_FORMAT_VERSION,
            "leanlm_version": __version__,
            "model_name": self.model_name,
            "num_experts": str(self.num_experts),
            "top_k": str(self.top_k),
            "layer_names": json.dumps({str(index): name for index, name in self.layer_names.items()}),
        }

        tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file(tensors, str(tmp), metadata=metadata)
            os.replace(tmp, path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise InvalidArgumentError(
                f"cannot write the routing trace to {path} ({err.strerror}); choose a writable path"
            ) from err
        logger.info("wrote the routing trace of %d MoE layers to %s", len(self.layer_names), path)
        return path


def load_routing_trace(path: str | Path) -> RoutingTrace:
    """Read a routing trace written by `RoutingTrace.save`. Raises `InvalidArgumentError` for any other file."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != TRACE_FORMAT:
                raise InvalidArgumentError(
                    f"{path} is not a leanlm routing trace (format {metadata.get('format')!r}, expected "
                    f"{TRACE_FORMAT!r})"
                )
            layer_names = {int(index): name for index, name in json.loads(metadata["layer_names"]).items()}
            return RoutingTrace(
                model_name=metadata["model_name"],
                num_experts=int(metadata["num_experts"]),
                top_k=int(metadata["top_k"]),
                layer_names=layer_names,
                experts={index: handle.get_tensor(f"layer.{index}.experts") for index in layer_names},
                weights={index: handle.get_tensor(f"layer.{index}.weights") for index in layer_names},
                forward_tokens={index: handle.get_tensor(f"layer.{index}.forward_tokens") for index in layer_names},
            )
    except (OSError, SafetensorError, KeyError, json.JSONDecodeError) as err:
        raise InvalidArgumentError(f"cannot read the routing trace {path}: {err}") from err


class RoutingRecorder:
    """Routing observer that keeps every layer's routing on the CPU, for `moe_runtime(recorder=...)`."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self._layers: dict[int, MoeLayerSpec] = {}
        self._experts: dict[int, list[torch.Tensor]] = {}  # layer index -> per forward [N_f, K_f] int16
        self._weights: dict[int, list[torch.Tensor]] = {}  # layer index -> per forward [N_f, K_f] float32

    def record(self, layer: MoeLayerSpec, routing: Routing) -> None:
        self._layers.setdefault(layer.index, layer)
        self._experts.setdefault(layer.index, []).append(routing.experts.detach().to("cpu", torch.int16))
        self._weights.setdefault(layer.index, []).append(routing.weights.detach().to("cpu", torch.float32))

    def trace(self) -> RoutingTrace:
        """Return what was recorded, each layer's forward passes concatenated in order.

        When a policy used different K in different forward passes, the narrower ones are padded with null
        slots of weight 0. Raises `InvalidArgumentError` when nothing was recorded or the layers disagree on the
        number of experts or top-k.
        """
        if not self._layers:
            raise InvalidArgumentError(
                "the routing recorder is empty; pass it to moe_runtime(recorder=...) and run a forward pass"
            )
        sizes = {(layer.num_experts, layer.top_k) for layer in self._layers.values()}
        if len(sizes) > 1:
            raise InvalidArgumentError(
                f"the recorded MoE layers differ in (number of experts, top-k): {sorted(sizes)}; a routing trace "
                "stores one value of each"
            )
        ((num_experts, top_k),) = sizes

        indices = sorted(self._layers)
        return RoutingTrace(
            model_name=self.model_name,
            num_experts=num_experts,
            top_k=top_k,
            layer_names={index: self._layers[index].name for index in indices},
            experts={index: _concat_padded(self._experts[index], NULL_EXPERT) for index in indices},
            weights={index: _concat_padded(self._weights[index], 0.0) for index in indices},
            forward_tokens={
                index: torch.tensor([part.shape[0] for part in self._experts[index]], dtype=torch.int64)
                for index in indices
            },
        )

    def save(self, path: str | Path) -> Path:
        """Write the recorded trace to `path` (see `RoutingTrace.save`)."""
        return self.trace().save(path)


def _concat_padded(parts: list[torch.Tensor], fill: float) -> torch.Tensor:
    """Concatenate [N_f, K_f] tensors along N after padding each to the largest K with `fill`."""
    width = max(part.shape[1] for part in parts)
    padded = [torch.nn.functional.pad(part, (0, width - part.shape[1]), value=fill) for part in parts]
    return torch.cat(padded)
