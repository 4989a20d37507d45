"""Loading real models: registry names, GGUF files, local directories and hub ids.

`DEFAULT_MODEL` and the registry import nothing heavy; the loader, which imports transformers, loads on
first use so that `leanlm --help` starts quickly.
"""

from leanlm.models.registry import DEFAULT_MODEL, REGISTRY, RegistryEntry

__all__ = ["DEFAULT_MODEL", "REGISTRY", "LoadedModel", "RegistryEntry", "cached_models", "load_model"]

_LAZY = {"LoadedModel": "leanlm.models.loader", "load_model": "leanlm.models.loader", "cached_models": "leanlm.models.gguf_cache"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
