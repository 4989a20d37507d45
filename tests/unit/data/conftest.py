"""Stand-in tokenizers for the prose window tests."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import pytest


class WordTokenizer:
    """Tokenizer that maps each whitespace-separated word to a CRC32-derived id and counts its calls."""

    def __init__(self, name_or_path: str) -> None:
        self.name_or_path = name_or_path
        self.calls = 0

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, Any]:
        assert add_special_tokens is False, "token windows must not add special tokens"
        self.calls += 1
        ids = [zlib.crc32(word.encode("utf-8")) % 50_000 for word in text.split()]
        return {"input_ids": ids}


@pytest.fixture
def make_tokenizer(request: pytest.FixtureRequest) -> Callable[[], WordTokenizer]:
    """Build word tokenizers whose name is unique to the test, so cached tokens never leak between tests."""

    def build() -> WordTokenizer:
        return WordTokenizer(f"word-tokenizer/{request.node.nodeid}")

    return build
