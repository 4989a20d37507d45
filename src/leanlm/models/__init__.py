"""Loading real models: registry names, GGUF files, local directories and hub ids."""

from leanlm.models.gguf_cache import cached_models
from leanlm.models.loader import LoadedModel, load_model
from leanlm.models.registry import DEFAULT_MODEL, REGISTRY, RegistryEntry

__all__ = ["DEFAULT_MODEL", "REGISTRY", "LoadedModel", "RegistryEntry", "cached_models", "load_model"]
