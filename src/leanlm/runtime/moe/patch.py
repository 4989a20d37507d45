"""Routing a model's MoE blocks through leanlm's grouped execution, inside a context manager.

`moe_runtime` finds every block whose class has an adapter in `MOE_ADAPTERS`, replaces the block instance's
`forward` with `moe_block_forward`, and restores the stock forward on exit, also when the body raises. Nothing
is changed on the block classes, so other models in the process keep the stock path.
"""

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from leanlm.errors import InvalidArgumentError
from leanlm.runtime.moe.adapters import MOE_ADAPTERS, MoeBlockAdapter
from leanlm.runtime.moe.execute import moe_block_forward
from leanlm.runtime.moe.routing import MoeLayerSpec, Routing, RoutingObserver, RoutingPolicy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MoeLayer:
    """One MoE block of a model, with its adapter and sizes."""

    spec: MoeLayerSpec
    block: nn.Module
    adapter: MoeBlockAdapter


def find_moe_layers(model: nn.Module) -> list[MoeLayer]:
    """Return the model's supported MoE blocks in module order, numbered from 0.

    Raises `InvalidArgumentError` listing the supported block classes when the model has none.
    """
    layers: list[MoeLayer] = []
    for name, module in model.named_modules():
        adapter = MOE_ADAPTERS.lookup(module)
        if adapter is not None:
            layers.append(MoeLayer(spec=adapter.describe(module, len(layers), name), block=module, adapter=adapter))

    if not layers:
        raise InvalidArgumentError(
            f"found no supported MoE block in {type(model).__name__}; the MoE runtime supports "
            f"{', '.join(MOE_ADAPTERS.supported())}"
        )
    return layers


def stock_policy(model: nn.Module) -> RoutingPolicy:
    """Return a policy that routes each layer by its block's own top-k rule, as a base for custom policies."""
    layers = find_moe_layers(model)

    def route(logits: torch.Tensor, layer_index: int, hidden: torch.Tensor) -> Routing:
        layer = layers[layer_index]
        return layer.adapter.stock_routing(layer.block, logits)

    return route


@contextmanager
def moe_runtime(
    model: nn.Module,
    policy: RoutingPolicy | None = None,
    recorder: RoutingObserver | Sequence[RoutingObserver] | None = None,
) -> Iterator[list[MoeLayer]]:
    """Run every supported MoE block of `model` through grouped execution while the context is open.

    `policy(router_logits [N, E], layer_index, hidden [N, H])` replaces each block's stock top-k, and None
    keeps the stock rule.
    `recorder` (one observer or several) is shown every layer's routing on every forward. The context yields
    the model's MoE layers.

    Notes:
        Each forward reads the used experts back to the host, so the path cannot be captured by
        `torch.compile(fullgraph=True)` or CUDA graphs. Under activation checkpointing the recomputation in
        backward calls the policy and the observers a second time.
    """
    layers = find_moe_layers(model)
    observers = _as_observers(recorder)

    replaced: list[tuple[nn.Module, object]] = []  # (block, its instance-level forward before, or None)
    try:
        for layer in layers:
            block = layer.block
            previous = block.__dict__.get("forward")
            block.forward = partial(
                moe_block_forward,
                adapter=layer.adapter,
                block=block,
                layer=layer.spec,
                policy=policy,
                observers=observers,
            )
            replaced.append((block, previous))
        logger.debug("routing %d MoE blocks of %s through grouped execution", len(layers), type(model).__name__)
        yield layers
    finally:
        for block, previous in reversed(replaced):
            if previous is None:
                del block.forward
            else:
                block.forward = previous


def _as_observers(recorder: RoutingObserver | Sequence[RoutingObserver] | None) -> tuple[RoutingObserver, ...]:
    if recorder is None:
        return ()
    if isinstance(recorder, Sequence):
        return tuple(recorder)
    return (recorder,)
