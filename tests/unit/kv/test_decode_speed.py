"""Decode timing over a cache filled with random states, as the KV benchmark uses it."""

from leanlm.bench.kv import decode_speed
from leanlm.kv.matryoshka.method import MatryoshkaKV
from leanlm.kv.matryoshka.projections import MatryoshkaProjections
from leanlm.kv.matryoshka.ranks import uniform_plan
from leanlm.runtime.cache import dynamic_cache


class CountingFactory:
    def __init__(self, factory):
        self.factory, self.caches = factory, []

    def __call__(self, model):
        cache = self.factory(model)
        self.caches.append(cache)
        return cache


def test_full_cache_holds_context_plus_steps(model):
    factory = CountingFactory(dynamic_cache)
    speed = decode_speed(model, factory, context=40, steps=3)
    assert speed > 0
    assert factory.caches[0].get_seq_length() == 40 + 3 + 1  # one untimed step, then three timed


def test_projected_cache_decodes(model, pca):
    method = MatryoshkaKV(MatryoshkaProjections(pca), uniform_plan(2, 2, 16, 0.5))
    factory = CountingFactory(method.cache)
    with method.enabled(model):
        speed = decode_speed(model, factory, context=40, steps=3)
    assert speed > 0
    assert factory.caches[0].get_seq_length() == 44


def test_evicting_cache_decodes_over_kept_tokens(model):
    from leanlm.kv.gate.method import AttentionGateKV
    from leanlm.kv.gate.module import AttentionGates

    config = model.config
    gate = AttentionGateKV(
        gates=AttentionGates(config.num_hidden_layers, config.hidden_size, config.num_key_value_heads, 8), evict=0.75
    )
    factory = CountingFactory(gate.cache)
    with gate.enabled(model):
        speed = decode_speed(model, factory, context=40, steps=3, keep=0.25)

    cache = factory.caches[0]
    assert speed > 0
    assert cache.get_seq_length() == 44  # positions continue after the evicted context
    assert cache.layers[0].length == 10 + 4  # slots: a quarter of the context, then the decoded tokens
