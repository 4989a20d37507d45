"""Chat backends: one interface for batched chat generation, run locally or by an OpenAI-compatible server."""

from leanlm.runtime.backends.base import BackendError, ChatBackend, ChatReply, ChatRequest
from leanlm.runtime.backends.local import LocalBackend
from leanlm.runtime.backends.openai_compatible import DEFAULT_API_KEY_ENV, OpenAICompatibleBackend
from leanlm.runtime.backends.retry import RetryPolicy

__all__ = [
    "DEFAULT_API_KEY_ENV",
    "BackendError",
    "ChatBackend",
    "ChatReply",
    "ChatRequest",
    "LocalBackend",
    "OpenAICompatibleBackend",
    "RetryPolicy",
]
