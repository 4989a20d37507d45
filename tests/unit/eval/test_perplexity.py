"""Tests of perplexity and continuation_perplexity against direct computation from one forward pass."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import DynamicCache, LlamaForCausalLM

from leanlm.errors import InvalidArgumentError
from leanlm.eval import PerplexityResult, continuation_perplexity, perplexity

FP32_BYTES = 4


def full_pass_nll(model: LlamaForCausalLM, windows: torch.Tensor, first_scored: int) -> float:
    """Mean cross-entropy of tokens `first_scored..T-1`, predicted from one forward pass with no cache."""
    with torch.no_grad():
        logits = model(input_ids=windows, use_cache=False).logits  # [N, T, V]
    predicted = logits[:, first_scored - 1 : -1]
    targets = windows[:, first_scored:]
    return F.cross_entropy(predicted.flatten(0, 1), targets.flatten()).item()


def expected_kv_bytes(model: LlamaForCausalLM, batch: int, context: int) -> int:
    config = model.config
    head_dim = config.hidden_size // config.num_attention_heads
    # keys and values, for every layer
    return config.num_hidden_layers * 2 * batch * config.num_key_value_heads * context * head_dim * FP32_BYTES


class CountingFactory:
    """Cache factory that returns a plain DynamicCache and counts how often it was called."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, model: LlamaForCausalLM) -> DynamicCache:
        self.calls += 1
        return DynamicCache(config=model.config)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_perplexity_matches_direct(model, windows, batch_size: int) -> None:
    nll = full_pass_nll(model, windows, first_scored=1)

    result = perplexity(model, windows, batch_size=batch_size)

    assert result.ppl == pytest.approx(math.exp(nll), rel=1e-5)
    assert result.nll == pytest.approx(nll, rel=1e-5)
    assert result.tokens == windows.shape[0] * (windows.shape[1] - 1)
    assert result.windows == windows.shape[0]
    assert result.kv_bytes is None
    assert "kv_bytes" not in result.to_dict()


def test_perplexity_batch_size_invariant(model, windows) -> None:
    single = perplexity(model, windows, batch_size=1)
    batched = perplexity(model, windows, batch_size=3)
    uneven = perplexity(model, windows, batch_size=4)

    assert batched.ppl == pytest.approx(single.ppl, rel=1e-5)
    assert uneven.ppl == pytest.approx(single.ppl, rel=1e-5)
    assert batched.tokens == single.tokens
    assert uneven.tokens == single.tokens


def test_perplexity_reports_progress(model, windows) -> None:
    finished: list[int] = []

    perplexity(model, windows, batch_size=4, progress=finished.append)

    assert finished == [4, 2]


def test_perplexity_result_to_dict() -> None:
    result = PerplexityResult(ppl=2.0, nll=math.log(2.0), tokens=10, windows=2, kv_bytes=64)

    assert result.to_dict() == {"ppl": 2.0, "nll": math.log(2.0), "tokens": 10, "windows": 2, "kv_bytes": 64}


@pytest.mark.parametrize("context", [1, 10, 23])
def test_continuation_matches_full_pass(model, windows, context: int) -> None:
    nll = full_pass_nll(model, windows, first_scored=context)

    result = continuation_perplexity(model, windows, context)

    assert result.ppl == pytest.approx(math.exp(nll), rel=1e-4)
    assert result.tokens == windows.shape[0] * (windows.shape[1] - context)
    assert result.windows == windows.shape[0]


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_continuation_kv_bytes(model, windows, batch_size: int) -> None:
    context = 10

    result = continuation_perplexity(model, windows, context, batch_size=batch_size)

    assert result.kv_bytes == expected_kv_bytes(model, batch_size, context)


def test_continuation_batch_size_invariant(model, windows) -> None:
    single = continuation_perplexity(model, windows, 10, batch_size=1)
    batched = continuation_perplexity(model, windows, 10, batch_size=3)

    assert batched.ppl == pytest.approx(single.ppl, rel=1e-5)
    assert batched.tokens == single.tokens


@pytest.mark.parametrize(("batch_size", "batches"), [(1, 6), (2, 3), (4, 2), (6, 1)])
def test_cache_factory_once_per_batch(model, windows, batch_size: int, batches: int) -> None:
    factory = CountingFactory()

    continuation_perplexity(model, windows, 10, cache=factory, batch_size=batch_size)

    assert factory.calls == batches


def test_continuation_reports_progress(model, windows) -> None:
    finished: list[int] = []

    continuation_perplexity(model, windows, 10, batch_size=4, progress=finished.append)

    assert finished == [4, 2]


@pytest.mark.parametrize(
    "bad_windows",
    [
        torch.zeros(24, dtype=torch.long),
        torch.zeros((2, 3, 24), dtype=torch.long),
        torch.zeros((0, 24), dtype=torch.long),
    ],
    ids=["rank-1", "rank-3", "no-windows"],
)
def test_bad_window_shape_raises(model, bad_windows: torch.Tensor) -> None:
    with pytest.raises(InvalidArgumentError, match=r"\[N, T\]"):
        perplexity(model, bad_windows)
    with pytest.raises(InvalidArgumentError, match=r"\[N, T\]"):
        continuation_perplexity(model, bad_windows, 4)


def test_perplexity_needs_two_tokens(model) -> None:
    with pytest.raises(InvalidArgumentError, match="at least 2"):
        perplexity(model, torch.zeros((2, 1), dtype=torch.long))


@pytest.mark.parametrize("context", [24, 30])
def test_windows_shorter_than_context(model, windows, context: int) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        continuation_perplexity(model, windows, context)

    message = str(caught.value)
    assert "24 tokens" in message
    assert f"at least {context + 1}" in message


@pytest.mark.parametrize("context", [0, -3])
def test_context_must_be_positive(model, windows, context: int) -> None:
    with pytest.raises(InvalidArgumentError, match=f"got {context}"):
        continuation_perplexity(model, windows, context)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_perplexity_rejects_bad_batch_size(model, windows, batch_size: int) -> None:
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        perplexity(model, windows, batch_size=batch_size)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_continuation_rejects_bad_batch_size(model, windows, batch_size: int) -> None:
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        continuation_perplexity(model, windows, 10, batch_size=batch_size)
