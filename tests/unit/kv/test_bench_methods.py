"""The list of methods the KV benchmark measures: names, budgets and kept fractions."""

import pytest
import torch

from leanlm.bench.kv import KVBenchConfig, _gate_methods, _matryoshka_methods
from leanlm.errors import InvalidArgumentError
from leanlm.kv.gate.method import AttentionGateKV
from leanlm.kv.gate.module import AttentionGates
from leanlm.kv.matryoshka.projections import MatryoshkaProjections
from leanlm.kv.matryoshka.ranks import uniform_plan

BUDGETS = (1.0, 0.5, 0.25)


def test_method_list(model, loaded, pca):
    config = KVBenchConfig(budgets=BUDGETS, gate_evictions=(0.5, 0.75), combined=((0.5, 0.5),))
    projections = MatryoshkaProjections(pca)
    plans = {budget: uniform_plan(2, 2, 16, budget) for budget in BUDGETS}
    gates = AttentionGates(2, model.config.hidden_size, 2, gate_dim=8)
    gate = AttentionGateKV(gates=gates, evict=0.5)

    matryoshka = _matryoshka_methods(loaded, config, projections, projections, plans)
    gated = _gate_methods(loaded, config, gate, projections, plans)

    assert [(m.name, m.budget) for m in matryoshka[:3]] == [
        ("pca-uniform", 1.0), ("matryoshka-uniform", 1.0), ("matryoshka-searched", 1.0)
    ]
    assert len(matryoshka) == 3 * len(BUDGETS)
    assert [(m.name, m.budget, m.keep) for m in gated] == [
        ("attention-gate", 0.5, 0.5), ("attention-gate", 0.25, 0.25), ("gate+matryoshka", 0.25, 0.5)
    ]
    cache = gated[-1].cache(model)
    assert cache.layers[0].projection.key_ranks == [8, 8]  # the MatryoshkaKV half of the combined cache


def test_combined_budget_must_be_benchmarked():
    with pytest.raises(InvalidArgumentError, match="not among the benchmark's budgets"):
        KVBenchConfig(budgets=(1.0, 0.25), combined=((0.5, 0.5),))
