"""Attention-Gate artifacts and the combined cache: round trip, model checks, and bytes that multiply."""

import pytest
import torch

from leanlm.errors import ArtifactError
from leanlm.kv import load_kv
from leanlm.kv.combined import GatedMatryoshkaKV
from leanlm.kv.gate.method import AttentionGateKV, load_gate, save_gate
from leanlm.kv.gate.module import AttentionGates
from leanlm.kv.matryoshka.method import MatryoshkaKV, save_matryoshka
from leanlm.kv.matryoshka.projections import MatryoshkaProjections
from leanlm.kv.matryoshka.ranks import RankPlan
from leanlm.models.loader import LoadedModel
from leanlm.runtime.cache import kv_cache_bytes

from .helpers import VOCAB_SIZE, build_llama

PROMPT = 20


def gate_method(model, evict: float = 0.5, seed: int = 0) -> AttentionGateKV:
    config = model.config
    torch.manual_seed(seed)
    gates = AttentionGates(config.num_hidden_layers, config.hidden_size, config.num_key_value_heads, gate_dim=8)
    return AttentionGateKV(gates=gates, evict=evict, sinks=1, window=2)


def matryoshka_method(pca, key_ranks, value_ranks) -> MatryoshkaKV:
    plan = RankPlan(key_ranks=torch.tensor(key_ranks), value_ranks=torch.tensor(value_ranks), head_dim=16)
    return MatryoshkaKV(projections=MatryoshkaProjections(pca), plan=plan)


def prompt_ids(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB_SIZE, (batch, PROMPT + 4), generator=torch.Generator().manual_seed(seed))


def run(method, model, ids: torch.Tensor, prefill_only: bool = False):
    """Return the logits of a prefill of PROMPT tokens and a continuation over the cache, and the cache."""
    cache = method.cache(model)
    with torch.no_grad(), method.enabled(model):
        first = model(input_ids=ids[:, :PROMPT], cache=cache, use_cache=True).logits[:, -1:]
        if prefill_only:
            return first, cache
        rest = model(input_ids=ids[:, PROMPT:], cache=cache, use_cache=True).logits
    return torch.cat([first, rest], dim=1), cache


def test_round_trip_same_output(tmp_path, model, loaded):
    method = gate_method(model, seed=2)
    path = save_gate(tmp_path / "gate", method, loaded, {"note": "test"})
    restored = load_gate(path, loaded)

    expected, _ = run(method, model, prompt_ids())
    observed, _ = run(restored, model, prompt_ids())

    assert restored.evict == method.evict
    assert (restored.sinks, restored.window) == (method.sinks, method.window)
    assert torch.equal(observed, expected)


def test_load_rejects_other_base_model(tmp_path, model, loaded):
    path = save_gate(tmp_path / "gate", gate_method(model), loaded, {})
    other = LoadedModel(model=model, tokenizer=None, name="other", fingerprint="another-fingerprint")

    with pytest.raises(ArtifactError):
        load_gate(path, other)


def test_load_rejects_other_shape(tmp_path, model, loaded):
    path = save_gate(tmp_path / "gate", gate_method(model), loaded, {})
    deeper = LoadedModel(model=build_llama(layers=3), tokenizer=None, name="tiny-llama", fingerprint=loaded.fingerprint)

    with pytest.raises(ArtifactError, match="fit the gate again"):
        load_gate(path, deeper)


def test_load_kv_combines_gate_and_matryoshka(tmp_path, model, loaded, pca):
    gate_path = save_gate(tmp_path / "gate", gate_method(model), loaded, {})
    ranks = [[8, 8], [8, 8]]
    matryoshka_path = save_matryoshka(tmp_path / "mkv", matryoshka_method(pca, ranks, ranks), loaded, {})

    method = load_kv([gate_path, matryoshka_path], loaded)

    assert isinstance(method, GatedMatryoshkaKV)


def test_load_kv_rejects_two_gates(tmp_path, model, loaded):
    first = save_gate(tmp_path / "a", gate_method(model), loaded, {})
    second = save_gate(tmp_path / "b", gate_method(model), loaded, {})

    with pytest.raises(ArtifactError, match="at most one of each kind") as error:
        load_kv([first, second], loaded)

    assert str(first) in str(error.value)
    assert str(second) in str(error.value)


def test_combined_bytes_multiply(model, pca):
    key_ranks, value_ranks = [[4, 8], [12, 16]], [[16, 12], [8, 4]]
    combined = GatedMatryoshkaKV(gate=gate_method(model, evict=0.5), matryoshka=matryoshka_method(pca, key_ranks, value_ranks))
    batch = 2

    _, cache = run(combined, model, prompt_ids(batch), prefill_only=True)

    kept = PROMPT // 2
    rank_total = sum(map(sum, key_ranks)) + sum(map(sum, value_ranks))
    assert kv_cache_bytes(cache) == batch * kept * rank_total * 4  # fp32


def test_combined_full_rank_equals_gate_alone(model, pca):
    """At full rank the projections are exact, so the combined cache computes what the gate alone does."""
    full = [[16, 16], [16, 16]]
    gate = gate_method(model, evict=0.5, seed=3)
    combined = GatedMatryoshkaKV(gate=gate, matryoshka=matryoshka_method(pca, full, full))

    expected, _ = run(gate, model, prompt_ids(seed=4))
    observed, _ = run(combined, model, prompt_ids(seed=4))

    assert torch.allclose(observed, expected, atol=1e-4)


def test_combined_low_rank_changes_output(model, pca):
    gate = gate_method(model, evict=0.5, seed=3)
    low = [[4, 4], [4, 4]]
    combined = GatedMatryoshkaKV(gate=gate, matryoshka=matryoshka_method(pca, low, low))

    expected, _ = run(gate, model, prompt_ids(seed=4))
    observed, _ = run(combined, model, prompt_ids(seed=4))

    assert not torch.allclose(observed, expected, atol=1e-3)


def test_load_kv_missing_path(tmp_path, loaded):
    with pytest.raises(ArtifactError, match="not found"):
        load_kv([tmp_path / "nope"], loaded)


def test_saved_weights_readable_like_config(tmp_path, model, loaded):
    path = save_gate(tmp_path / "gate", gate_method(model), loaded, {})

    assert (path / "gates.safetensors").stat().st_mode & 0o777 == (path / "config.json").stat().st_mode & 0o777
