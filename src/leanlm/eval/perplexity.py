"""Perplexity of a model over token windows, and context-compressed continuation perplexity.

Continuation perplexity is the quality metric of every KV-cache method: N context tokens are prefilled into a
cache (which the method may compress), then the next M tokens are scored against that cache.

Shapes: N windows, B batch, T window tokens, V vocabulary.
"""

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from leanlm.errors import InvalidArgumentError
from leanlm.runtime.cache import CacheFactory, dynamic_cache, kv_cache_bytes

Progress = Callable[[int], None]  # called with the number of windows just finished


@dataclass
class PerplexityResult:
    ppl: float
    nll: float  # mean negative log-likelihood per scored token, in nats
    tokens: int  # scored tokens
    windows: int
    kv_bytes: int | None = None  # mean bytes the cache held after prefill; continuation perplexity only

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}


def perplexity(
    model: PreTrainedModel, windows: torch.Tensor, *, batch_size: int = 1, progress: Progress | None = None
) -> PerplexityResult:
    """Score every token of each window after its first, with no cache and no compression."""
    _check_windows(windows, min_tokens=2)
    _check_batch_size(batch_size)
    total_nll, total_tokens = 0.0, 0
    with torch.inference_mode():
        for batch in windows.split(batch_size):  # [B, T]
            batch = batch.to(model.device)
            logits = model(input_ids=batch, use_cache=False).logits  # [B, T, V]
            total_nll += _nll_sum(logits[:, :-1], batch[:, 1:])
            total_tokens += batch[:, 1:].numel()
            if progress:
                progress(batch.shape[0])
    return _result(total_nll, total_tokens, windows.shape[0])


def continuation_perplexity(
    model: PreTrainedModel,
    windows: torch.Tensor,
    context: int,
    *,
    cache: CacheFactory = dynamic_cache,
    batch_size: int = 1,
    progress: Progress | None = None,
) -> PerplexityResult:
    """Prefill `context` tokens of each window into a fresh cache, then score the remaining tokens.

    The prefill's last logits predict the first scored token. The rest come from one forward pass of the
    continuation over the cache, so the measure includes whatever a method did to the cached context.
    """
    _check_windows(windows, min_tokens=context + 1)
    _check_batch_size(batch_size)
    if context <= 0:
        raise InvalidArgumentError(f"context must be a positive number of tokens, got {context}")

    total_nll, total_tokens, total_bytes, batches = 0.0, 0, 0, 0
    with torch.inference_mode():
        for batch in windows.split(batch_size):  # [B, T]
            batch = batch.to(model.device)
            nll, kv_bytes = _score_continuation(model, batch, context, cache(model))
            total_nll += nll
            total_tokens += batch[:, context:].numel()
            total_bytes += kv_bytes
            batches += 1
            if progress:
                progress(batch.shape[0])
    result = _result(total_nll, total_tokens, windows.shape[0])
    result.kv_bytes = round(total_bytes / batches)
    return result


def _score_continuation(model, batch: torch.Tensor, context: int, cache) -> tuple[float, int]:
    B, T = batch.shape

    # prefill the context; its last logits predict the first scored token
    positions = torch.arange(context, device=batch.device).expand(B, -1)  # [B, N]
    out = model(input_ids=batch[:, :context], position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1)
    nll = _nll_sum(out.logits, batch[:, context : context + 1])
    kv_bytes = kv_cache_bytes(cache)

    # score the continuation over the (possibly compressed) cache
    if T - context > 1:
        positions = torch.arange(context, T - 1, device=batch.device).expand(B, -1)  # [B, M - 1]
        out = model(input_ids=batch[:, context:-1], position_ids=positions, cache=cache, use_cache=True)
        nll += _nll_sum(out.logits, batch[:, context + 1 :])
    return nll, kv_bytes


def _nll_sum(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum").item()


def _result(total_nll: float, total_tokens: int, windows: int) -> PerplexityResult:
    nll = total_nll / total_tokens
    return PerplexityResult(ppl=math.exp(nll), nll=nll, tokens=total_tokens, windows=windows)


def _check_windows(windows: torch.Tensor, min_tokens: int) -> None:
    if windows.ndim != 2 or windows.shape[0] == 0:
        raise InvalidArgumentError(f"expected token windows of shape [N, T] with N > 0, got {tuple(windows.shape)}")
    if windows.shape[1] < min_tokens:
        raise InvalidArgumentError(f"windows of {windows.shape[1]} tokens are too short; need at least {min_tokens}")


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size}")
