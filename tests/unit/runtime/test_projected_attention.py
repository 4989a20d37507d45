"""Attention over a `ProjectedCache`, against the plain model and against reconstructed full-width states.

Uses the tiny Llama of this folder's conftest: 2 layers, 4 query heads sharing 2 KV heads of head dim 16.
Shapes: B batch, T tokens, L layers, Hkv KV heads, D head dim, R rank of one head.
"""

import copy

import pytest
import torch
from transformers import Cache, DynamicCache
from transformers.cache_utils import DynamicLayer

from leanlm.runtime import SamplingConfig, generate
from leanlm.runtime.kv_attention import KV_ATTENTION, kv_attention_enabled, kv_attention_forward
from leanlm.runtime.projected_cache import HeadProjection, ProjectedCache, ProjectedLayer

from .projections import random_projections

HEAD_DIM = 16
KV_HEADS = 2
FULL_RANKS = [[16, 16], [16, 16]]  # [L][Hkv]
KEY_RANKS = [[4, 12], [16, 8]]  # ranks that differ per layer, per head and between keys and values
VALUE_RANKS = [[8, 16], [4, 12]]
DECODE_STEPS = 6


def random_ids(batch: int, tokens: int, vocab_size: int, seed: int) -> torch.Tensor:
    return torch.randint(3, vocab_size, (batch, tokens), generator=torch.Generator().manual_seed(seed))


class ReconstructedLayer(DynamicLayer):
    """Reference layer: store k_hat = ((k - mu) U_R) U_R^T + mu at full width D, likewise v_hat.

    Plain attention over these states is what projected attention computes without leaving R features.
    """

    def __init__(self, projection: HeadProjection):
        super().__init__()
        self.projection = projection

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        projection = self.projection
        keys = reconstruct(key_states, projection.key_bases, projection.key_means)
        values = reconstruct(value_states, projection.value_bases, projection.value_means)
        return super().update(keys, values, *args, **kwargs)


def reconstruct(states: torch.Tensor, bases: list[torch.Tensor], means: torch.Tensor) -> torch.Tensor:
    """Map [B, Hkv, T, D] onto each head's rank-R affine subspace, keeping width D."""
    heads = []
    for h, basis in enumerate(bases):
        centred = states[:, h] - means[h]  # [B, T, D]
        heads.append((centred @ basis) @ basis.T + means[h])
    return torch.stack(heads, dim=1)


def reconstructed_cache(projections: list[HeadProjection]) -> Cache:
    return Cache(layers=[ReconstructedLayer(projection) for projection in projections])


@pytest.fixture
def isolated_model(model):
    """A copy of the tiny Llama with its own config, for tests that switch the attention implementation."""
    return copy.deepcopy(model)


# --- full rank equals the plain model -------------------------------------------------------------


def test_full_rank_prefill_matches_plain(model):
    projections = random_projections(FULL_RANKS, FULL_RANKS, seed=0)
    input_ids = random_ids(2, 16, model.config.vocab_size, seed=1)

    with torch.no_grad():
        expected = model(input_ids=input_ids).logits
        with kv_attention_enabled(model):
            observed = model(input_ids=input_ids, cache=ProjectedCache(projections), use_cache=True).logits

    assert torch.allclose(observed, expected, atol=1e-4)


def test_full_rank_chunked_prefill_matches_plain(model):
    projections = random_projections(FULL_RANKS, FULL_RANKS, seed=2)
    input_ids = random_ids(2, 25, model.config.vocab_size, seed=3)
    chunk_positions = torch.arange(20, 25).expand(2, 5)

    with torch.no_grad():
        expected = model(input_ids=input_ids).logits
        cache = ProjectedCache(projections)
        with kv_attention_enabled(model):
            first = model(input_ids=input_ids[:, :20], cache=cache, use_cache=True).logits
            second = model(input_ids=input_ids[:, 20:], position_ids=chunk_positions, cache=cache, use_cache=True).logits

    assert cache.get_seq_length() == 25
    assert torch.allclose(first, expected[:, :20], atol=1e-4)
    assert torch.allclose(second, expected[:, 20:], atol=1e-4)


def test_full_rank_generate_matches_plain(model, tokenizer):
    projections = random_projections(FULL_RANKS, FULL_RANKS, seed=4)
    prompts = [[1, 40, 41, 42, 43, 44, 45, 46, 47], [1, 120, 7]]  # left padding of 6 on the second row
    config = SamplingConfig(max_new_tokens=12)

    expected = generate(model, tokenizer, prompts, config)
    with kv_attention_enabled(model):
        observed = generate(model, tokenizer, prompts, config, cache=lambda _: ProjectedCache(projections))

    assert isinstance(observed.cache, ProjectedCache)
    assert observed.tokens[0] == expected.tokens[0]
    assert observed.tokens[1] == expected.tokens[1]
    assert observed.finish_reasons == expected.finish_reasons


# --- ragged ranks equal attention over reconstructed states ----------------------------------------


def test_ragged_ranks_match_reconstruction(model):
    projections = random_projections(KEY_RANKS, VALUE_RANKS, seed=5)
    input_ids = random_ids(2, 10, model.config.vocab_size, seed=6)
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, :3] = 0  # three tokens of left padding on the second row
    positions = (mask.cumsum(dim=-1) - 1).clamp_min(0)  # [B, T]

    projected_cache = ProjectedCache(projections)
    reference_cache = reconstructed_cache(projections)
    with torch.no_grad():
        plain = model(input_ids=input_ids, attention_mask=mask, position_ids=positions).logits
        expected = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=reference_cache, use_cache=True).logits
        with kv_attention_enabled(model):
            observed = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=projected_cache, use_cache=True).logits

    # the ranks must change the output, or the comparison below would not test the projection at all
    assert (expected[0] - plain[0]).abs().max().item() > 1e-2
    assert torch.allclose(observed[0], expected[0], atol=1e-4)
    assert torch.allclose(observed[1, 3:], expected[1, 3:], atol=1e-4), "padded row, real tokens"

    positions = positions[:, -1:]  # [B, 1]
    for step in range(DECODE_STEPS):
        token = expected[:, -1].argmax(dim=-1, keepdim=True)  # [B, 1]
        positions = positions + 1
        mask = torch.cat([mask, mask.new_ones(2, 1)], dim=-1)
        with torch.no_grad():
            expected = model(input_ids=token, attention_mask=mask, position_ids=positions, cache=reference_cache, use_cache=True).logits
            with kv_attention_enabled(model):
                observed = model(input_ids=token, attention_mask=mask, position_ids=positions, cache=projected_cache, use_cache=True).logits
        assert torch.allclose(observed, expected, atol=1e-4), f"decode step {step}"


def test_ragged_generate_without_padding(model, tokenizer):
    """Decode with no attention mask at all, where attention takes SDPA's causal and unmasked paths."""
    projections = random_projections(KEY_RANKS, VALUE_RANKS, seed=7)
    prompt = random_ids(1, 8, model.config.vocab_size, seed=8)
    config = SamplingConfig(max_new_tokens=DECODE_STEPS, stop_at_eos=False)

    with kv_attention_enabled(model):
        observed = generate(model, tokenizer, [prompt[0].tolist()], config, cache=lambda _: ProjectedCache(projections))

    reference_cache = reconstructed_cache(projections)
    tokens = prompt
    with torch.no_grad():
        logits = model(input_ids=tokens, cache=reference_cache, use_cache=True).logits
        expected = []
        for _ in range(DECODE_STEPS):
            token = logits[:, -1].argmax(dim=-1, keepdim=True)  # [1, 1]
            expected.append(token.item())
            logits = model(input_ids=token, cache=reference_cache, use_cache=True).logits

    assert observed.tokens[0] == expected


# --- direct calls of the attention function ------------------------------------------------------


def manual_attention(query, keys, values, scale: float, causal: bool) -> torch.Tensor:
    """Attend from [B, H, Tq, D] queries over [B, Hkv, T, D] states by the textbook formula, giving [B, Tq, H, D]."""
    group = query.shape[1] // keys.shape[1]
    keys = keys.repeat_interleave(group, dim=1)  # [B, H, T, D]
    values = values.repeat_interleave(group, dim=1)
    scores = query @ keys.transpose(-1, -2) * scale  # [B, H, Tq, T]
    if causal:
        Tq, T = scores.shape[-2:]
        allowed = torch.ones(Tq, T, dtype=torch.bool).tril(diagonal=T - Tq)  # query i attends to keys 0 .. T - Tq + i
        scores = scores.masked_fill(~allowed, float("-inf"))
    return (scores.softmax(dim=-1) @ values).transpose(1, 2)


def projected_states(projection: HeadProjection, tokens: int, seed: int):
    """Fill a `ProjectedLayer` with random states [B=2, Hkv, T, D], then return its `ProjectedKV` and the rebuilt states."""
    generator = torch.Generator().manual_seed(seed)
    keys = torch.randn(2, KV_HEADS, tokens, HEAD_DIM, generator=generator)
    values = torch.randn(2, KV_HEADS, tokens, HEAD_DIM, generator=generator)
    projected, _ = ProjectedLayer(projection).update(keys, values)
    rebuilt_keys = reconstruct(keys, projection.key_bases, projection.key_means)
    rebuilt_values = reconstruct(values, projection.value_bases, projection.value_means)
    return projected, rebuilt_keys, rebuilt_values


@pytest.mark.parametrize(("query_tokens", "causal"), [(1, False), (7, True)], ids=["decode", "causal-prefill"])
def test_direct_call_matches_manual_attention(query_tokens, causal):
    projection = random_projections(KEY_RANKS, VALUE_RANKS, seed=11)[0]
    projected, keys, values = projected_states(projection, tokens=7, seed=12)
    query = torch.randn(2, 4, query_tokens, HEAD_DIM, generator=torch.Generator().manual_seed(13))
    scale = HEAD_DIM**-0.5

    observed, weights = kv_attention_forward(torch.nn.Module(), query, projected, projected, None, scaling=scale)
    expected = manual_attention(query, keys, values, scale, causal)

    assert weights is None
    assert observed.shape == (2, query_tokens, 4, HEAD_DIM)
    assert torch.allclose(observed, expected, atol=1e-5)


def test_default_scale_is_full_head_dim():
    projection = random_projections(KEY_RANKS, VALUE_RANKS, seed=14)[0]  # key ranks 4 and 12 of 16
    projected, keys, values = projected_states(projection, tokens=5, seed=15)
    query = torch.randn(2, 4, 1, HEAD_DIM, generator=torch.Generator().manual_seed(16))

    observed, _ = kv_attention_forward(torch.nn.Module(), query, projected, projected, None, scaling=None)
    expected = manual_attention(query, keys, values, HEAD_DIM**-0.5, causal=False)

    assert torch.allclose(observed, expected, atol=1e-5)


# --- the context manager -----------------------------------------------------------------------------


def test_context_switches_and_restores(isolated_model):
    before = isolated_model.config._attn_implementation

    with kv_attention_enabled(isolated_model) as inside:
        during = isolated_model.config._attn_implementation

    assert inside is isolated_model
    assert during == KV_ATTENTION
    assert isolated_model.config._attn_implementation == before


def test_context_restores_after_exception(isolated_model):
    before = isolated_model.config._attn_implementation

    with pytest.raises(RuntimeError, match="raised inside the block"):
        with kv_attention_enabled(isolated_model):
            raise RuntimeError("raised inside the block")

    assert isolated_model.config._attn_implementation == before


def test_context_restores_eager(isolated_model):
    isolated_model.set_attn_implementation("eager")

    with kv_attention_enabled(isolated_model):
        pass

    assert isolated_model.config._attn_implementation == "eager"


def test_dynamic_cache_after_context(isolated_model):
    input_ids = random_ids(2, 8, isolated_model.config.vocab_size, seed=9)
    with torch.no_grad():
        expected = isolated_model(input_ids=input_ids, cache=DynamicCache(config=isolated_model.config), use_cache=True).logits
        with kv_attention_enabled(isolated_model):
            pass
        observed = isolated_model(input_ids=input_ids, cache=DynamicCache(config=isolated_model.config), use_cache=True).logits

    assert torch.allclose(observed, expected, atol=1e-6)


def test_dynamic_cache_inside_context(isolated_model):
    """Plain key and value tensors reach SDPA unchanged while projected attention is on."""
    input_ids = random_ids(2, 8, isolated_model.config.vocab_size, seed=10)
    with torch.no_grad():
        expected = isolated_model(input_ids=input_ids).logits
        with kv_attention_enabled(isolated_model):
            observed = isolated_model(input_ids=input_ids, cache=DynamicCache(config=isolated_model.config), use_cache=True).logits

    assert torch.allclose(observed, expected, atol=1e-6)
