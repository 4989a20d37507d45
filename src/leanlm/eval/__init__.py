"""Quality measurements: perplexity, continuation perplexity over a KV cache, passkey retrieval."""

from leanlm.eval.passkey import PasskeyConfig, PasskeyResult, passkey_accuracy
from leanlm.eval.perplexity import PerplexityResult, continuation_perplexity, perplexity

__all__ = [
    "PasskeyConfig",
    "PasskeyResult",
    "PerplexityResult",
    "continuation_perplexity",
    "passkey_accuracy",
    "perplexity",
]
