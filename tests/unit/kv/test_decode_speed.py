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
