"""Hooks into transformers: the generation loop and the KV cache it takes."""

from leanlm.runtime.cache import CacheFactory, dynamic_cache, kv_cache_bytes
from leanlm.runtime.generate import Generation, check_context, generate
from leanlm.runtime.prompts import PromptBatch, apply_chat_template, encode_prompts
from leanlm.runtime.sampling import SamplingConfig

__all__ = [
    "CacheFactory",
    "Generation",
    "PromptBatch",
    "SamplingConfig",
    "apply_chat_template",
    "check_context",
    "dynamic_cache",
    "encode_prompts",
    "generate",
    "kv_cache_bytes",
]
