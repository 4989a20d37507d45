"""KV-cache benchmark: every method at every budget, on the evaluation split, in one run.

Methods: the full cache; PCA bases with uniform ranks; MatryoshkaKV (trained) with uniform and with
searched ranks; Attention-Gate at several eviction ratios; the gate and MatryoshkaKV combined; kvpress
token-eviction presses at the same bytes (compression ratio = 1 - budget), run in their own environment on
the same model files, windows and metric.

One gate, trained for one eviction ratio (or loaded from an artifact), serves every ratio: inference keeps
a fixed quota of the tokens it scores highest, so only the quota changes.

Decode speed is timed over a cache filled through `Cache.update` with random states at the full context
length (for eviction methods: with a random choice of the kept tokens): decode cost does not depend on the
values, and this avoids a 16K-token prefill per method on a CPU. Presses keep `budget x context` tokens of
a plain cache, so their decode speed is not timed here.

Shapes: N windows, T tokens, L layers, Hkv KV heads, D head dim.
"""

import copy
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from leanlm.data import token_windows
from leanlm.errors import InvalidArgumentError
from leanlm.eval import PasskeyConfig, continuation_perplexity, passkey_accuracy
from leanlm.eval.passkey import build_prompts
from leanlm.home import leanlm_home
from leanlm.kv.combined import GatedMatryoshkaKV
from leanlm.kv.gate.fit import GateFitConfig, fit_gate
from leanlm.kv.gate.method import AttentionGateKV, load_gate
from leanlm.kv.matryoshka.method import MatryoshkaKV
from leanlm.kv.matryoshka.pca import collect_statistics, pca_bases
from leanlm.kv.matryoshka.projections import MatryoshkaProjections
from leanlm.kv.matryoshka.ranks import uniform_plan
from leanlm.kv.matryoshka.search import KLScorer, search_ranks
from leanlm.kv.matryoshka.train import TrainConfig, train_projections
from leanlm.models.loader import LoadedModel
from leanlm.runtime.cache import dynamic_cache
from leanlm.runtime.token_eviction import KEEP_KWARG, KeepDecision

logger = logging.getLogger(__name__)

StageProgress = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


@dataclass
class KVBenchConfig:
    budgets: tuple[float, ...] = (1.0, 0.75, 0.5, 0.375, 0.25)
    context: int = 2048
    scored: int = 256
    windows: int = 4
    passkey_lengths: tuple[int, ...] = (1024,)
    passkey_depths: tuple[float, ...] = (0.0, 0.5, 1.0)
    passkey_trials: int = 2
    decode_contexts: tuple[int, ...] = (4096, 16384)
    decode_tokens: int = 8
    train_steps: int = 100
    calibration_windows: int = 32
    calibration_window: int = 256
    search_tokens: int = 128
    search_rounds: int = 10
    gate_evictions: tuple[float, ...] = (0.25, 0.5, 0.75)
    gate_steps: int = 200  # training steps of the gate, trained at an eviction ratio of 0.5
    gate_path: Path | None = None  # a fitted Attention-Gate artifact to use instead of training one
    combined: tuple[tuple[float, float], ...] = ((0.5, 0.5), (0.25, 0.5))  # (gate eviction ratio, MatryoshkaKV budget)
    presses: tuple[str, ...] = ("snapkv", "knorm", "streaming-llm", "expected-attention", "observed-attention")

    def __post_init__(self) -> None:
        missing = sorted({budget for _, budget in self.combined if budget not in self.budgets})
        if missing:
            raise InvalidArgumentError(
                f"combined caches use MatryoshkaKV budgets {missing}, which are not among the benchmark's budgets "
                f"{list(self.budgets)}; add them to budgets"
            )


@dataclass
class KVBenchRow:
    method: str
    budget: float
    kv_bytes: int
    ppl: float
    passkey_acc: float | None
    decode_tokens_per_s: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Method:
    name: str
    budget: float
    cache: Callable | None  # cache factory; None is the plain cache
    enabled: Callable[[], AbstractContextManager] = nullcontext
    keep: float = 1.0  # fraction of the prompt's tokens the cache keeps


def bench_kv(loaded: LoadedModel, config: KVBenchConfig, stage: StageProgress | None = None) -> tuple[list[KVBenchRow], dict]:
    """Fit the MatryoshkaKV variants, then measure every method; return rows and the fitted plans."""
    stage = stage or _silent_stage
    pca, trained, plans = _fit_variants(loaded, config, stage)

    methods = [_Method("full", 1.0, None)]
    methods += _matryoshka_methods(loaded, config, pca, trained, plans)
    methods += _gate_methods(loaded, config, _gate(loaded, config, stage), trained, plans)

    windows = token_windows(loaded.tokenizer, "evaluation", config.context + config.scored, config.windows)
    passkey = PasskeyConfig(lengths=config.passkey_lengths, depths=config.passkey_depths, trials=config.passkey_trials)
    rows = []
    with stage("leanlm methods", len(methods)) as advance:
        for method in methods:
            rows.append(_measure(loaded, method, windows, config, passkey))
            advance(1)
    if config.presses:
        with stage("kvpress presses", 1) as advance:
            rows.extend(_press_rows(loaded, windows, config, passkey))
            advance(1)
    return rows, {str(b): p.to_lists() for b, p in plans.items()}


def _fit_variants(loaded: LoadedModel, config: KVBenchConfig, stage: StageProgress):
    model = loaded.model
    windows = token_windows(loaded.tokenizer, "calibration", config.calibration_window, config.calibration_windows)
    fit_windows, held_out = windows[:-1], windows[-1:, : config.search_tokens]
    with stage("PCA", fit_windows.shape[0]) as advance:
        pca = MatryoshkaProjections(pca_bases(collect_statistics(model, fit_windows, progress=advance)))

    trained = copy.deepcopy(pca)
    with stage("training", config.train_steps) as advance:
        train_projections(model, trained, fit_windows, TrainConfig(steps=config.train_steps), progress=advance)
    trained.frozen()

    budgets = [b for b in config.budgets if b < 1.0]
    L, H, D = trained.shape
    with stage("rank search", round((1 - min(budgets)) * 2 * L * H * 8)) as advance:
        plans = search_ranks(KLScorer(model, trained, held_out), L, H, D, budgets, rounds=config.search_rounds, progress=advance)
    plans[1.0] = uniform_plan(L, H, D, 1.0)
    return pca, trained, plans


def _method(name: str, budget: float, kv, loaded: LoadedModel, keep: float = 1.0) -> _Method:
    return _Method(name, round(budget, 6), kv.cache, lambda: kv.enabled(loaded.model), keep)


def _matryoshka_methods(loaded: LoadedModel, config: KVBenchConfig, pca, trained, plans) -> list[_Method]:
    methods = []
    for budget in config.budgets:
        for name, projections, plan in (
            ("pca-uniform", pca, uniform_plan(*pca.shape, budget)),
            ("matryoshka-uniform", trained, uniform_plan(*trained.shape, budget)),
            ("matryoshka-searched", trained, plans[budget]),
        ):
            methods.append(_method(name, budget, MatryoshkaKV(projections=projections, plan=plan), loaded))
    return methods


def _gate_methods(loaded: LoadedModel, config: KVBenchConfig, gate: AttentionGateKV, trained, plans) -> list[_Method]:
    """Return the gate at each eviction ratio, then the gate combined with searched MatryoshkaKV ranks."""
    def at(evict: float) -> AttentionGateKV:
        return AttentionGateKV(gates=gate.gates, evict=evict, sinks=gate.sinks, window=gate.window)

    methods = [_method("attention-gate", 1 - evict, at(evict), loaded, 1 - evict) for evict in config.gate_evictions]
    for evict, budget in config.combined:
        combined = GatedMatryoshkaKV(gate=at(evict), matryoshka=MatryoshkaKV(projections=trained, plan=plans[budget]))
        methods.append(_method("gate+matryoshka", (1 - evict) * budget, combined, loaded, 1 - evict))
    return methods


def _gate(loaded: LoadedModel, config: KVBenchConfig, stage: StageProgress) -> AttentionGateKV:
    if config.gate_path is not None:
        return load_gate(config.gate_path, loaded)
    gate, _, _ = fit_gate(loaded, GateFitConfig(evict=0.5, steps=config.gate_steps), stage=stage)
    return gate


def _measure(loaded: LoadedModel, method: _Method, windows, config: KVBenchConfig, passkey: PasskeyConfig) -> KVBenchRow:
    factory = method.cache or dynamic_cache
    with method.enabled():
        ppl = continuation_perplexity(loaded.model, windows, config.context, cache=factory)
        accuracy = passkey_accuracy(loaded.model, loaded.tokenizer, passkey, cache=factory).accuracy
        speeds = {n: decode_speed(loaded.model, factory, n, config.decode_tokens, method.keep) for n in config.decode_contexts}
    logger.info("%s at %.3f: ppl %.3f, %d bytes", method.name, method.budget, ppl.ppl, ppl.kv_bytes)
    return KVBenchRow(method.name, method.budget, ppl.kv_bytes, ppl.ppl, accuracy, speeds)


def decode_speed(model, factory: Callable, context: int, steps: int, keep: float = 1.0) -> float:
    """Time `steps` greedy decode steps over a cache holding `context` positions of random states.

    With `keep` < 1 the cache evicts all but a random choice of round(keep x context) tokens per KV head,
    as an eviction method's cache would after its prefill.
    """
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    cache = factory(model)
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for layer in range(config.num_hidden_layers):
            shape = (1, config.num_key_value_heads, context, head_dim)  # [B, Hkv, T, D]
            kwargs = {KEEP_KWARG: _random_keep(config.num_key_value_heads, context, keep, generator)} if keep < 1 else {}
            cache.update(torch.randn(shape, generator=generator), torch.randn(shape, generator=generator), layer, kwargs=kwargs)

        # one untimed step first: a projected cache grows its buffers on the first decode step
        token = torch.zeros((1, 1), dtype=torch.long)
        started = 0.0
        for step in range(steps + 1):
            if step == 1:
                started = time.perf_counter()
            positions = torch.tensor([[context + step]])
            logits = model(input_ids=token, position_ids=positions, cache=cache, use_cache=True).logits
            token = logits[:, -1].argmax(dim=-1, keepdim=True)
        return steps / (time.perf_counter() - started)


def _random_keep(kv_heads: int, context: int, keep: float, generator: torch.Generator) -> KeepDecision:
    kept = round(keep * context)
    indices = torch.stack([torch.randperm(context, generator=generator)[:kept].sort().values for _ in range(kv_heads)])
    flags = torch.zeros((1, kv_heads, context)).scatter_(2, indices[None], 1.0)  # [1, Hkv, T]
    return KeepDecision(flags=flags, window=1, indices=indices[None], slot_valid=torch.ones((1, kept), dtype=torch.bool))


def _press_rows(loaded: LoadedModel, windows, config: KVBenchConfig, passkey: PasskeyConfig) -> list[KVBenchRow]:
    from leanlm.bench.kvpress_peer import run_kvpress_peers

    prompts = [{"tokens": p.tokens, "key": p.key} for p in build_prompts(loaded.tokenizer, passkey)]
    ratios = [round(1 - b, 6) for b in config.budgets if b < 1.0]
    results = run_kvpress_peers(
        loaded.directory, windows, config.context, list(config.presses), ratios, home=leanlm_home(), passkey=prompts
    )
    rows = []
    for result in results:
        budget = round(1 - result["compression_ratio"], 6)
        rows.append(KVBenchRow(result["method"], budget, result["kv_bytes"], result["ppl"], result.get("passkey_acc")))
    return rows


@contextmanager
def _silent_stage(name: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda n=1: None
