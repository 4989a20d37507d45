"""Token tensors and fixed-length token windows of the prose splits.

Tokenisation of a split is cached in memory per (tokenizer class, `name_or_path`, split), because the
KV-cache benchmark requests the same windows many times. Two tokenizer objects of the same class and
`name_or_path` therefore share one cache entry. A tokenizer with an empty or missing `name_or_path`
is never cached.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from leanlm.data.prose import prose_documents, validate_split
from leanlm.errors import InvalidArgumentError

logger = logging.getLogger(__name__)

_CACHE_SIZE = 8


@dataclass(frozen=True)
class _TokenizerKey:
    """Hashable cache key for a tokenizer. The tokenizer object is excluded from hashing and comparison."""

    class_name: str
    name_or_path: str
    tokenizer: Any = field(compare=False, hash=False, repr=False)


def prose_tokens(tokenizer: Any, split: str) -> list[torch.Tensor]:
    """Tokenise each document of a prose split without special tokens.

    Returns one 1-D LongTensor per document, in document order. `tokenizer` is called as
    `tokenizer(text, add_special_tokens=False)` and must return a mapping with "input_ids".
    """
    validate_split(split)
    return [tokens.clone() for tokens in _split_tokens(tokenizer, split)]


def token_windows(tokenizer: Any, split: str, window: int, max_windows: int | None = None) -> torch.Tensor:
    """Cut the tokens of a prose split into consecutive, non-overlapping windows of `window` tokens.

    Each document is cut separately and its remainder shorter than `window` is dropped, so no window
    crosses two documents. Returns a LongTensor of shape [N, window] in document order, limited to
    the first `max_windows` rows when given. Raises InvalidArgumentError for a bad split, a `window`
    below 1, a `max_windows` below 1, or a window longer than every document.
    """
    validate_split(split)
    _validate_positive("window", window)
    if max_windows is not None:
        _validate_positive("max_windows", max_windows)

    documents = _split_tokens(tokenizer, split)
    pieces = [_cut_windows(tokens, window) for tokens in documents]
    windows = torch.cat(pieces, dim=0)
    if windows.shape[0] == 0:
        longest = max(len(tokens) for tokens in documents)
        total = sum(len(tokens) for tokens in documents)
        raise InvalidArgumentError(
            f"No window of {window} tokens fits in the {split!r} split: its longest document has "
            f"{longest} tokens ({total} tokens over {len(documents)} documents). "
            f"Use a window of at most {longest} tokens."
        )

    if max_windows is not None:
        windows = windows[:max_windows]
    return windows


def _validate_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")


def _cut_windows(tokens: torch.Tensor, window: int) -> torch.Tensor:
    count = len(tokens) // window
    return tokens[: count * window].reshape(count, window)


def _split_tokens(tokenizer: Any, split: str) -> tuple[torch.Tensor, ...]:
    name_or_path = str(getattr(tokenizer, "name_or_path", "") or "")
    if not name_or_path:
        return _tokenize_split(tokenizer, split)

    key = _TokenizerKey(type(tokenizer).__qualname__, name_or_path, tokenizer)
    return _cached_split_tokens(key, split)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _cached_split_tokens(key: _TokenizerKey, split: str) -> tuple[torch.Tensor, ...]:
    logger.debug("Tokenising the %s split with %s", split, key.name_or_path)
    return _tokenize_split(key.tokenizer, split)


def _tokenize_split(tokenizer: Any, split: str) -> tuple[torch.Tensor, ...]:
    return tuple(_tokenize(tokenizer, text) for text in prose_documents(split))


def _tokenize(tokenizer: Any, text: str) -> torch.Tensor:
    encoding = tokenizer(text, add_special_tokens=False)
    return torch.tensor(list(encoding["input_ids"]), dtype=torch.long)


def clear_token_cache() -> None:
    """Drop every cached tokenisation, for example after changing a tokenizer in place."""
    _cached_split_tokens.cache_clear()
