"""Attention-Gate eviction and MatryoshkaKV ranks in one cache, so the two savings multiply.

The gate decides which prompt tokens each KV head keeps; the projected cache stores those tokens at the
head's MatryoshkaKV rank. A head keeping a fraction k of the tokens at rank R of D stores k x R / D of its
full bytes.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from transformers import Cache, PreTrainedModel

from leanlm.kv.gate.method import AttentionGateKV
from leanlm.kv.matryoshka.method import MatryoshkaKV


@dataclass
class GatedMatryoshkaKV:
    gate: AttentionGateKV
    matryoshka: MatryoshkaKV

    def cache(self, model: PreTrainedModel) -> Cache:
        """Return an empty projected cache at the MatryoshkaKV ranks; the gate's decisions evict into it."""
        return self.matryoshka.cache(model)

    @contextmanager
    def enabled(self, model: PreTrainedModel) -> Iterator[None]:
        """Let `model` evict by the gate and attend over projected states inside the block."""
        with self.gate.enabled(model):
            yield
