"""Tests of prose_tokens and token_windows with stand-in and Hugging Face tokenizers."""

from __future__ import annotations

import pytest
import torch

from leanlm.data import prose_tokens, token_windows
from leanlm.errors import InvalidArgumentError


def test_prose_tokens_one_per_document(make_tokenizer) -> None:
    tokens = prose_tokens(make_tokenizer(), "evaluation")

    assert len(tokens) == 2
    assert all(piece.dim() == 1 for piece in tokens)
    assert all(piece.dtype == torch.long for piece in tokens)


def test_windows_shape_and_dtype(make_tokenizer) -> None:
    windows = token_windows(make_tokenizer(), "calibration", 128)

    assert windows.dim() == 2
    assert windows.shape[1] == 128
    assert windows.shape[0] > 0
    assert windows.dtype == torch.long


def test_windows_stay_within_documents(make_tokenizer) -> None:
    tokenizer = make_tokenizer()
    window = 1000
    documents = prose_tokens(tokenizer, "evaluation")
    per_document = [len(tokens) // window for tokens in documents]
    # With this window, windows that crossed documents would add at least one more row.
    assert sum(per_document) < sum(len(tokens) for tokens in documents) // window

    windows = token_windows(tokenizer, "evaluation", window)

    expected = torch.cat(
        [tokens[: count * window].reshape(count, window) for tokens, count in zip(documents, per_document)]
    )
    assert windows.shape[0] == sum(per_document)
    assert torch.equal(windows, expected)


def test_max_windows_keeps_first_rows(make_tokenizer) -> None:
    tokenizer = make_tokenizer()
    all_windows = token_windows(tokenizer, "evaluation", 64)
    first_windows = token_windows(tokenizer, "evaluation", 64, max_windows=3)

    assert first_windows.shape == (3, 64)
    assert torch.equal(first_windows, all_windows[:3])


def test_max_windows_above_count(make_tokenizer) -> None:
    tokenizer = make_tokenizer()
    all_windows = token_windows(tokenizer, "calibration", 4096)

    assert token_windows(tokenizer, "calibration", 4096, max_windows=10_000).shape == all_windows.shape


def test_tokenisation_cached_per_split(make_tokenizer) -> None:
    tokenizer = make_tokenizer()
    token_windows(tokenizer, "evaluation", 32)
    calls_after_first = tokenizer.calls
    token_windows(tokenizer, "evaluation", 64)
    prose_tokens(tokenizer, "evaluation")

    assert calls_after_first == 2
    assert tokenizer.calls == calls_after_first


def test_unnamed_tokenizer_not_cached(make_tokenizer) -> None:
    tokenizer = make_tokenizer()
    tokenizer.name_or_path = ""
    token_windows(tokenizer, "calibration", 32)
    token_windows(tokenizer, "calibration", 32)

    assert tokenizer.calls == 2


def test_cached_tokens_not_mutated(make_tokenizer) -> None:
    tokenizer = make_tokenizer()
    first = prose_tokens(tokenizer, "calibration")[0]
    original = first.clone()
    first.zero_()

    assert torch.equal(prose_tokens(tokenizer, "calibration")[0], original)


@pytest.mark.parametrize("window", [0, -5, True, 2.5])
def test_invalid_window_rejected(make_tokenizer, window) -> None:
    with pytest.raises(InvalidArgumentError, match="window"):
        token_windows(make_tokenizer(), "calibration", window)


def test_invalid_max_windows_rejected(make_tokenizer) -> None:
    with pytest.raises(InvalidArgumentError, match="max_windows"):
        token_windows(make_tokenizer(), "calibration", 16, max_windows=0)


def test_window_longer_than_documents(make_tokenizer) -> None:
    tokenizer = make_tokenizer()
    longest = max(len(tokens) for tokens in prose_tokens(tokenizer, "calibration"))

    with pytest.raises(InvalidArgumentError) as caught:
        token_windows(tokenizer, "calibration", longest + 1)

    message = str(caught.value)
    assert f"{longest} tokens" in message
    assert f"at most {longest}" in message


def test_windows_unknown_split(make_tokenizer) -> None:
    with pytest.raises(InvalidArgumentError, match="calibration"):
        token_windows(make_tokenizer(), "test", 16)


def test_huggingface_fast_tokenizer() -> None:
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    model = tokenizers.models.WordLevel(unk_token="[UNK]")
    backend = tokenizers.Tokenizer(model)
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    trainer = tokenizers.trainers.WordLevelTrainer(vocab_size=2000, special_tokens=["[UNK]"])
    backend.train_from_iterator(["the year 2889 the earth chronicle of one day in the life"], trainer=trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    tokenizer.name_or_path = "in-memory-word-level"

    windows = token_windows(tokenizer, "evaluation", 256, max_windows=4)

    assert windows.shape == (4, 256)
    assert windows.dtype == torch.long
