"""KV caches as the generation loop uses them: how to make one, and how many bytes one really holds.

Every KV method plugs in here by handing the loop a transformers `Cache` (or a factory of them). The loop
never reads the cache's length to place tokens: positions come from the tokens processed, so a cache may
keep a different number of tokens, or a different feature width, per layer and per KV head.
"""

from collections.abc import Callable

import torch
from transformers import Cache, DynamicCache, PreTrainedModel

CacheFactory = Callable[[PreTrainedModel], Cache]


def dynamic_cache(model: PreTrainedModel) -> Cache:
    """Return the plain full cache transformers uses by default."""
    return DynamicCache(config=model.config)


def kv_cache_bytes(cache: Cache) -> int:
    """Count the bytes of tensor storage a cache holds, over all layers.

    A cache class may define `nbytes()` to report its own figure (for storage that is not a tensor attribute
    of its layers). Otherwise every tensor attribute of every layer counts, each storage once, so views
    that share one buffer are not double-counted.
    """
    own = getattr(cache, "nbytes", None)
    if callable(own):
        return int(own())
    return sum(layer_bytes(layer) for layer in getattr(cache, "layers", []))


def layer_bytes(layer: object) -> int:
    seen: set[int] = set()
    total = 0
    for value in vars(layer).values():
        for tensor in _tensors_in(value):
            storage = tensor.untyped_storage()
            if storage.data_ptr() in seen or storage.nbytes() == 0:
                continue
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def _tensors_in(value: object) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, list | tuple):
        return [t for item in value for t in _tensors_in(item)]
    return []
