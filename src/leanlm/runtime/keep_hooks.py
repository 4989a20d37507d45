"""Hooks that let a token-eviction policy decide, before each attention layer's prefill, which tokens it keeps.

The policy reads the hidden states entering the layer's attention and returns a `KeepDecision`. The hook
hands it to the cache's update and to the attention call through their keyword arguments, so nothing is
stored on the model. Decoding steps (the layer's cache already contains tokens) are left alone: new tokens are
kept. Without a cache (training) every forward pass gets a decision.

Shapes: B batch, T tokens, C model dim.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import torch
from transformers import PreTrainedModel

from leanlm.errors import InvalidArgumentError
from leanlm.runtime.token_eviction import KEEP_KWARG, KeepDecision

# (layer index, hidden states [B, T, C], real tokens [B, T] or None when none is padding) -> decision
KeepPolicy = Callable[[int, torch.Tensor, torch.Tensor | None], KeepDecision]


def attention_layers(model: PreTrainedModel) -> list[torch.nn.Module]:
    """Return the model's attention modules in layer order (the modules that own `k_proj` and `layer_idx`)."""
    layers = [m for m in model.modules() if hasattr(m, "layer_idx") and hasattr(m, "k_proj")]
    if not layers:
        raise InvalidArgumentError(
            f"found no attention layers with k_proj in {type(model).__name__}; token eviction supports "
            "Llama-style attention modules"
        )
    return sorted(layers, key=lambda m: m.layer_idx)


@contextmanager
def keep_decisions_enabled(model: PreTrainedModel, policy: KeepPolicy) -> Iterator[None]:
    """Ask `policy` for a keep decision before every attention prefill inside the block."""
    handles = [
        layer.register_forward_pre_hook(partial(_decide, policy), with_kwargs=True) for layer in attention_layers(model)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _decide(policy: KeepPolicy, module: torch.nn.Module, args: tuple, kwargs: dict):
    cache = kwargs.get("cache")
    if cache is not None and cache.layers[module.layer_idx].get_seq_length() > 0:
        return None  # decoding: the prompt was decided at prefill and new tokens are kept

    hidden = kwargs["hidden_states"]  # [B, T, C]
    kwargs[KEEP_KWARG] = policy(module.layer_idx, hidden, real_tokens(kwargs.get("attention_mask")))
    return args, kwargs


def real_tokens(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Return which keys are real tokens [B, T] from a boolean 4-D prefill mask [B, 1, T, T] (None: all real).

    The last query of a left-padded prefill sees every real token and no padding.
    """
    if attention_mask is None:
        return None
    return attention_mask[:, 0, -1, :]
