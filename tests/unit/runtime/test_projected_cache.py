"""`ProjectedCache` storage: per-head widths with no padding, exact prefill bytes, and decode growth.

Uses the tiny Llama of this folder's conftest: 2 layers, 4 query heads sharing 2 KV heads of head dim 16.
Shapes: B batch, T tokens, Hkv KV heads, D head dim, R rank of one head.
"""

import pytest
import torch

from leanlm.runtime import SamplingConfig, generate, kv_cache_bytes
from leanlm.runtime.kv_attention import kv_attention_enabled
from leanlm.runtime.projected_cache import MAX_GROWTH, MIN_GROWTH, ProjectedCache, ProjectedLayer, project_heads

from .projections import random_projections

HEAD_DIM = 16
FLOAT32_BYTES = 4
KEY_RANKS = [[4, 12], [16, 8]]  # [L][Hkv]
VALUE_RANKS = [[8, 16], [4, 12]]
RANK_SUM = sum(map(sum, KEY_RANKS)) + sum(map(sum, VALUE_RANKS))  # 80 of the full 2 x L x Hkv x D = 128


def expected_bytes(batch: int, positions: int) -> int:
    return batch * positions * FLOAT32_BYTES * RANK_SUM


def prefill(model, cache: ProjectedCache, batch: int, tokens: int) -> torch.Tensor:
    """Prefill random tokens into `cache` and return the logits of the last position [B, V]."""
    input_ids = torch.randint(3, model.config.vocab_size, (batch, tokens), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), kv_attention_enabled(model):
        return model(input_ids=input_ids, cache=cache, use_cache=True).logits[:, -1]


def decode(model, cache: ProjectedCache, logits: torch.Tensor, steps: int) -> torch.Tensor:
    """Feed `steps` greedy tokens one at a time and return the logits of the last one [B, V]."""
    with torch.no_grad(), kv_attention_enabled(model):
        for _ in range(steps):
            token = logits.argmax(dim=-1, keepdim=True)  # [B, 1]
            logits = model(input_ids=token, cache=cache, use_cache=True).logits[:, -1]
    return logits


def test_prefill_bytes_exact(model):
    cache = ProjectedCache(random_projections(KEY_RANKS, VALUE_RANKS, seed=1))
    prefill(model, cache, batch=2, tokens=10)

    assert cache.nbytes() == expected_bytes(2, 10)
    assert kv_cache_bytes(cache) == expected_bytes(2, 10)


def test_prefill_buffers_per_head_width(model):
    cache = ProjectedCache(random_projections(KEY_RANKS, VALUE_RANKS, seed=2))
    prefill(model, cache, batch=2, tokens=10)

    for layer_index, layer in enumerate(cache.layers):
        key_shapes = [tuple(buffer.shape) for buffer in layer.key_buffers]
        value_shapes = [tuple(buffer.shape) for buffer in layer.value_buffers]
        assert key_shapes == [(2, 10, rank) for rank in KEY_RANKS[layer_index]], f"keys, layer {layer_index}"
        assert value_shapes == [(2, 10, rank) for rank in VALUE_RANKS[layer_index]], f"values, layer {layer_index}"


def test_decode_grows_by_min_growth(model):
    cache = ProjectedCache(random_projections(KEY_RANKS, VALUE_RANKS, seed=3))
    logits = prefill(model, cache, batch=2, tokens=10)

    logits = decode(model, cache, logits, steps=1)
    assert cache.get_seq_length() == 11
    assert cache.nbytes() == expected_bytes(2, 10 + MIN_GROWTH)
    assert kv_cache_bytes(cache) == expected_bytes(2, 10 + MIN_GROWTH)

    decode(model, cache, logits, steps=3)
    assert cache.get_seq_length() == 14
    assert cache.nbytes() == expected_bytes(2, 10 + MIN_GROWTH), "no second growth while capacity remains"


def test_generate_reports_projected_bytes(model, tokenizer):
    prompts = [[1, 40, 41, 42, 43, 44, 45], [1, 120, 7]]  # padded to 7 tokens
    config = SamplingConfig(max_new_tokens=3, stop_at_eos=False)
    projections = random_projections(KEY_RANKS, VALUE_RANKS, seed=4)

    with kv_attention_enabled(model):
        result = generate(model, tokenizer, prompts, config, cache=lambda _: ProjectedCache(projections))

    assert result.kv_bytes == expected_bytes(2, 7 + MIN_GROWTH)


def test_growth_keeps_earlier_tokens():
    projection = random_projections(KEY_RANKS, VALUE_RANKS, seed=5)[0]
    layer = ProjectedLayer(projection)
    generator = torch.Generator().manual_seed(6)
    keys = torch.randn(2, 2, 5, HEAD_DIM, generator=generator)  # [B, Hkv, T, D]
    values = torch.randn(2, 2, 5, HEAD_DIM, generator=generator)
    layer.update(keys, values)
    stored = [buffer.clone() for buffer in layer.key_buffers + layer.value_buffers]

    new_keys = torch.randn(2, 2, 1, HEAD_DIM, generator=generator)
    new_values = torch.randn(2, 2, 1, HEAD_DIM, generator=generator)
    projected, _ = layer.update(new_keys, new_values)

    assert layer.key_buffers[0].shape[1] == 5 + MIN_GROWTH
    for index, (before, after) in enumerate(zip(stored, projected.keys + projected.values)):
        assert torch.equal(after[:, :5], before), f"buffer {index}"
    expected_new = project_heads(new_keys, projection.key_bases, projection.key_means)
    assert torch.equal(projected.keys[1][:, 5:], expected_new[1])


def test_update_returns_projected_states():
    projection = random_projections(KEY_RANKS, VALUE_RANKS, seed=7)[1]
    layer = ProjectedLayer(projection)
    keys = torch.randn(2, 2, 6, HEAD_DIM, generator=torch.Generator().manual_seed(8))  # [B, Hkv, T, D]
    projected, same = layer.update(keys, keys.clone())

    assert same is projected
    assert projected.projection is projection
    assert [tuple(head.shape) for head in projected.keys] == [(2, 6, 16), (2, 6, 8)]
    assert [tuple(head.shape) for head in projected.values] == [(2, 6, 4), (2, 6, 12)]
    head = 1
    expected = (keys[:, head] - projection.key_means[head]) @ projection.key_bases[head]  # [B, T, R]
    assert torch.allclose(projected.keys[head], expected, atol=1e-6)


def test_reset_releases_buffers(model):
    cache = ProjectedCache(random_projections(KEY_RANKS, VALUE_RANKS, seed=9))
    prefill(model, cache, batch=1, tokens=4)
    cache.reset()

    assert cache.get_seq_length() == 0
    assert cache.nbytes() == 0


@pytest.mark.parametrize(("prefill_tokens", "growth"), [(40, MIN_GROWTH), (400, 100), (2000, MAX_GROWTH)])
def test_growth_is_a_bounded_quarter(prefill_tokens, growth):
    layer = ProjectedLayer(random_projections(KEY_RANKS, VALUE_RANKS, seed=7)[0])
    shape = (1, 2, prefill_tokens, HEAD_DIM)  # [B, Hkv, T, D]
    layer.update(torch.zeros(shape), torch.zeros(shape))

    layer.update(torch.zeros(1, 2, 1, HEAD_DIM), torch.zeros(1, 2, 1, HEAD_DIM))

    assert layer.key_buffers[0].shape[1] == prefill_tokens + growth
