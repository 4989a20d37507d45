"""Attention-Gate eviction on a tiny Llama: keep-all equals the plain model, training-time masking equals
inference-time eviction for the same flags, and positions after eviction are right.

Shapes: B batch, T prompt tokens, M continuation tokens, Hkv = 2 KV heads, L = 2 layers.
"""

import pytest
import torch

from leanlm.kv.gate.method import AttentionGateKV
from leanlm.kv.gate.module import AttentionGates
from leanlm.runtime import SamplingConfig, generate
from leanlm.runtime.cache import kv_cache_bytes
from leanlm.runtime.keep_hooks import keep_decisions_enabled
from leanlm.runtime.kv_attention import kv_attention_enabled
from leanlm.runtime.token_eviction import KeepDecision

from .helpers import VOCAB_SIZE

PROMPT = 20
CONTINUATION = 6


def gate_method(model, evict: float, sinks: int = 1, window: int = 2, seed: int = 0) -> AttentionGateKV:
    config = model.config
    torch.manual_seed(seed)
    gates = AttentionGates(config.num_hidden_layers, config.hidden_size, config.num_key_value_heads, gate_dim=8)
    return AttentionGateKV(gates=gates, evict=evict, sinks=sinks, window=window)


def random_ids(batch: int, tokens: int, seed: int) -> torch.Tensor:
    return torch.randint(0, VOCAB_SIZE, (batch, tokens), generator=torch.Generator().manual_seed(seed))


class RecordingPolicy:
    """Wrap a method's policy and keep each layer's decision."""

    def __init__(self, method: AttentionGateKV):
        self.method = method
        self.decisions: dict[int, KeepDecision] = {}

    def __call__(self, layer, hidden, real):
        decision = self.method.decide(layer, hidden, real)
        self.decisions[layer] = decision
        return decision


def evicted_logits(model, method: AttentionGateKV, ids: torch.Tensor):
    """Prefill the prompt into an evicting cache, then score the continuation over it in one pass."""
    policy = RecordingPolicy(method)
    cache = method.cache(model)
    with torch.no_grad(), kv_attention_enabled(model), keep_decisions_enabled(model, policy):
        first = model(input_ids=ids[:, :PROMPT], cache=cache, use_cache=True).logits[:, -1:]
        rest = model(input_ids=ids[:, PROMPT:], cache=cache, use_cache=True).logits
    return torch.cat([first, rest], dim=1), policy.decisions, cache  # [B, 1 + M, V]


def masked_logits(model, decisions: dict[int, KeepDecision], ids: torch.Tensor):
    """Training-time path: one forward over prompt + continuation, attention weighted by the same flags.

    Continuation tokens are kept, as the cache keeps every token after the prefill.
    """

    def recorded(layer, hidden, real):
        prompt_flags = decisions[layer].flags  # [B, Hkv, T]
        tail = torch.ones(*prompt_flags.shape[:2], hidden.shape[1] - PROMPT)
        return KeepDecision(flags=torch.cat([prompt_flags, tail], dim=-1), window=decisions[layer].window)

    with torch.no_grad(), kv_attention_enabled(model), keep_decisions_enabled(model, recorded):
        logits = model(input_ids=ids, use_cache=False).logits
    return logits[:, PROMPT - 1 :]  # [B, 1 + M, V]: the predictions the evicted path made


def test_keep_all_equals_plain_model(model):
    ids = random_ids(2, PROMPT + CONTINUATION, seed=1)
    with torch.no_grad():
        expected = model(input_ids=ids).logits[:, PROMPT - 1 :]

    observed, _, _ = evicted_logits(model, gate_method(model, evict=0.0), ids)

    assert torch.allclose(observed, expected, atol=1e-5)


@pytest.mark.parametrize("evict", [0.25, 0.5, 0.75])
def test_eviction_equals_training_mask(model, evict):
    ids = random_ids(2, PROMPT + CONTINUATION, seed=2)
    method = gate_method(model, evict=evict, seed=3)

    observed, decisions, _ = evicted_logits(model, method, ids)
    expected = masked_logits(model, decisions, ids)

    assert torch.allclose(observed, expected, atol=1e-5)


def test_eviction_changes_output(model):
    """The equality above must come from real eviction: evicting half the prompt changes the logits."""
    ids = random_ids(2, PROMPT + CONTINUATION, seed=2)
    full, _, _ = evicted_logits(model, gate_method(model, evict=0.0), ids)
    evicted, _, _ = evicted_logits(model, gate_method(model, evict=0.5, seed=3), ids)

    assert not torch.allclose(full, evicted, atol=1e-3)


@pytest.mark.parametrize("evict", [0.25, 0.5, 0.75])
def test_cache_bytes_follow_eviction(model, evict):
    ids = random_ids(2, PROMPT, seed=4)
    method = gate_method(model, evict=evict)
    policy = RecordingPolicy(method)
    cache = method.cache(model)
    with torch.no_grad(), kv_attention_enabled(model), keep_decisions_enabled(model, policy):
        model(input_ids=ids, cache=cache, use_cache=True)

    config = model.config
    kept = round((1 - evict) * PROMPT)
    per_token = 2 * config.num_key_value_heads * config.head_dim * 4  # keys and values, fp32
    assert kv_cache_bytes(cache) == 2 * config.num_hidden_layers * kept * per_token
    for decision in policy.decisions.values():
        assert decision.flags.sum(dim=-1).eq(round((1 - evict) * PROMPT)).all()


def test_forced_tokens_are_kept(model):
    ids = random_ids(1, PROMPT, seed=5)
    method = gate_method(model, evict=0.75, sinks=2, window=3)
    _, decisions, _ = evicted_logits(model, method, torch.cat([ids, ids[:, :1]], dim=1))

    for decision in decisions.values():
        assert decision.flags[..., :2].eq(1).all()
        assert decision.flags[..., -3:].eq(1).all()


def test_left_padded_batch_matches_single_rows(model):
    """Rows of a padded batch evict and decode as they would alone, at the right positions."""
    method = gate_method(model, evict=0.5, seed=6)
    long_row = random_ids(1, PROMPT, seed=7)[0].tolist()
    short_row = random_ids(1, PROMPT - 6, seed=8)[0].tolist()
    config = SamplingConfig(max_new_tokens=5)

    with method.enabled(model):
        batch = generate(model, _Tokenizer(), [long_row, short_row], config, cache=method.cache)
        alone = [generate(model, _Tokenizer(), [row], config, cache=method.cache).tokens[0] for row in (long_row, short_row)]

    assert batch.tokens == alone


class _Tokenizer:
    """Just enough of a tokenizer for `generate` on token-id prompts: left padding with id 0, no text."""

    pad_token_id = 0
    eos_token_id = None
    padding_side = "left"
    chat_template = None

    def decode(self, tokens, **kwargs) -> str:
        return " ".join(str(t) for t in tokens)


def test_visible_mask_matches_visibility():
    from leanlm.runtime.token_eviction import visibility, visible_mask

    flags = (torch.rand(2, 3, 12, generator=torch.Generator().manual_seed(9)) > 0.5).float()  # [B, Hkv, T]

    assert torch.equal(visible_mask(flags, window=3), visibility(flags, window=3) > 0)
