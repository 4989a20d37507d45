"""MoE routing benchmark: dense, top-k MoE for several k, and AdaMoE at several targets, on held-out text.

Every MoE row runs through leanlm's grouped execution, so expert FLOPs and tokens/s follow the experts that
really ran. An AdaMoE row is compared with the top-k row of its base k: `expert_flops_ratio` is its
routed-expert FLOPs per token over that row's. Top-k rows give their ratio against the same base k.

Shapes: N windows, T tokens per window, B windows per forward.
"""

import logging
import math
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from leanlm.errors import InvalidArgumentError
from leanlm.moe.adamoe import AdaMoERouters
from leanlm.moe.adamoe.artifact import load_adamoe, save_adamoe
from leanlm.moe.adamoe.fit import AdaMoEFitConfig, fit_adamoe
from leanlm.runtime.moe import ExpertFlopsCounter, RoutingPolicy, find_moe_layers, moe_runtime

logger = logging.getLogger(__name__)

# stage(description, total) opens a progress display and yields an advance(n) callback
Stage = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


@dataclass
class MoeRow:
    method: str
    avg_real_experts: float
    expert_flops_ratio: float  # routed-expert FLOPs per token over the top-k base's
    ppl: float
    tokens_per_s: float
    base: str | None = None  # AdaMoE rows: the method of the top-k row they are compared with
    real_experts_histogram: list[int] = field(default_factory=list)  # tokens x layers with 0, 1, ... real experts

    def to_dict(self) -> dict:
        row = {
            "method": self.method, "avg_real_experts": self.avg_real_experts,
            "expert_flops_ratio": self.expert_flops_ratio, "ppl": self.ppl, "tokens_per_s": self.tokens_per_s,
            "real_experts_histogram": self.real_experts_histogram,
        }
        if self.base is not None:
            row["base"] = self.base
        return row


@dataclass
class Measurement:
    """Perplexity, throughput and routing counts of one way of running a model over the evaluation windows."""

    ppl: float
    tokens_per_s: float
    routed_flops_per_token: float = 0.0
    avg_real_experts: float = 0.0
    histogram: list[int] = field(default_factory=list)


def measure(
    model: PreTrainedModel, windows: torch.Tensor, *, policy: RoutingPolicy | None = None, use_runtime: bool = True,
    batch: int = 4, repeats: int = 3,
) -> Measurement:
    """Score windows [N, T] (perplexity of every token after the first) and time the forward passes.

    With `use_runtime` the MoE layers run through grouped execution with `policy` (None: the stock rule),
    and routed-expert FLOPs and real experts per token are counted on the first pass. Tokens/s is the
    median over `repeats` passes.
    """
    counter, histogram = ExpertFlopsCounter(), _Histogram()
    seconds, nll = [], 0.0
    for repeat in range(repeats):
        observers = [counter, histogram] if repeat == 0 else []
        start = time.perf_counter()
        total = 0.0
        with torch.inference_mode():
            for chunk in windows.split(batch):  # [B, T]
                chunk = chunk.to(model.device)
                if use_runtime:
                    with moe_runtime(model, policy=policy, recorder=observers):
                        logits = model(input_ids=chunk, use_cache=False).logits
                else:
                    logits = model(input_ids=chunk, use_cache=False).logits
                total += F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), chunk[:, 1:].flatten(), reduction="sum").item()
        seconds.append(time.perf_counter() - start)
        nll = total

    scored = windows.shape[0] * (windows.shape[1] - 1)
    result = Measurement(ppl=math.exp(nll / scored), tokens_per_s=windows.numel() / statistics.median(seconds))
    if use_runtime:
        report = counter.report()
        result.routed_flops_per_token = report.routed_flops_per_token
        result.avg_real_experts = report.avg_real_experts
        result.histogram = histogram.counts
    return result


class _Histogram:
    """A routing observer that counts (token, layer) pairs by their number of real experts."""

    def __init__(self) -> None:
        self.counts: list[int] = []

    def record(self, layer, routing) -> None:
        real = (routing.experts >= 0).sum(dim=-1)  # [N]
        counts = torch.bincount(real, minlength=routing.experts.shape[1] + 1).tolist()
        if len(counts) > len(self.counts):
            self.counts += [0] * (len(counts) - len(self.counts))
        for index, count in enumerate(counts):
            self.counts[index] += count


def top_k_rows(
    model: PreTrainedModel, windows: torch.Tensor, ks: list[int], base_k: int,
    policy_for: Callable[[int], RoutingPolicy | None], stage: Stage, repeats: int = 3,
) -> tuple[list[MoeRow], dict[int, Measurement]]:
    """Measure the MoE at each top-k in `ks` (which must contain `base_k`); return rows and measurements by k.

    `policy_for(k)` readies the model for top-k and returns the policy that routes it (None: the stock rule).
    It is called with `base_k` last, so the model is left at the base top-k.
    """
    if base_k not in ks:
        raise InvalidArgumentError(f"the AdaMoE base top-k {base_k} must be one of the measured top-k values {ks}")
    measured = {}
    with stage("top-k MoE", len(ks)) as advance:
        for k in ks:
            measured[k] = measure(model, windows, policy=policy_for(k), repeats=repeats)
            advance(1)
    policy_for(base_k)

    base_flops = measured[base_k].routed_flops_per_token
    rows = [
        MoeRow(f"top-{k}", m.avg_real_experts, m.routed_flops_per_token / base_flops, m.ppl, m.tokens_per_s,
               real_experts_histogram=m.histogram)
        for k, m in measured.items()
    ]
    return rows, measured


def adamoe_row(
    name: str, model: PreTrainedModel, windows: torch.Tensor, routers: AdaMoERouters, base_k: int,
    base: Measurement, repeats: int = 3,
) -> MoeRow:
    """Measure AdaMoE routers on the model at its base top-k and compare with that top-k's measurement."""
    result = measure(model, windows, policy=routers.policy, repeats=repeats)
    return MoeRow(
        name, result.avg_real_experts, result.routed_flops_per_token / base.routed_flops_per_token, result.ppl,
        result.tokens_per_s, base=f"top-{base_k}", real_experts_histogram=result.histogram,
    )


def num_experts(model: PreTrainedModel) -> int:
    return find_moe_layers(model)[0].spec.num_experts


@dataclass
class MoeBenchConfig:
    windows: int = 8  # evaluation windows
    window: int = 256  # tokens per window
    top_ks: tuple[int, ...] = (2, 4, 8, 16)  # E/8, E/4, E/2 and E for 16 experts
    base_k: int = 4  # the top-k AdaMoE starts from and is compared with
    targets: tuple[float, ...] = (3.4, 3.0)  # AdaMoE average real experts per token
    num_null: int = 8
    adamoe_top_k: int = 6
    adamoe_steps: int = 100
    repeats: int = 3  # timed passes per row; tokens/s is their median
    work_dir: Path | None = None  # directory of fitted AdaMoE routers that a rerun reuses (None: fit every time)

    def __post_init__(self) -> None:
        if self.base_k not in self.top_ks:
            raise InvalidArgumentError(f"--base-k {self.base_k} must be one of --top-ks {self.top_ks}")
        if min(self.top_ks) < 1:
            raise InvalidArgumentError(f"every --top-ks value must be 1 or more, got {self.top_ks}")
        if self.windows < 1 or self.window < 2 or self.repeats < 1:
            raise InvalidArgumentError(
                f"need windows >= 1, window >= 2 and repeats >= 1, got {self.windows}, {self.window}, {self.repeats}"
            )
        self.fit_configs()  # checks the AdaMoE settings before the long top-k rows

    def fit_configs(self) -> list[AdaMoEFitConfig]:
        """Return one AdaMoE fit per target."""
        return [
            AdaMoEFitConfig(num_null=self.num_null, top_k=self.adamoe_top_k, target_real=target, steps=self.adamoe_steps)
            for target in self.targets
        ]


def bench_moe(converted, dense, config: MoeBenchConfig, stage: Stage) -> list[MoeRow]:
    """Rows for a converted MoE (`LoadedModel`) and its dense source (`LoadedModel`), on the evaluation split."""
    from leanlm.data import token_windows
    from leanlm.moe import set_top_k

    windows = token_windows(converted.tokenizer, "evaluation", config.window, config.windows)
    model = converted.model
    experts = num_experts(model)

    with stage("dense", 1) as advance:
        plain = measure(dense.model, windows, use_runtime=False, repeats=config.repeats)
        advance(1)
    def converted_at(k: int) -> None:
        set_top_k(model, k)  # the converted model's own routers then route top-k

    rows, measured = top_k_rows(model, windows, list(config.top_ks), config.base_k, converted_at, stage, config.repeats)
    dense_row = MoeRow("dense", float(experts), experts / config.base_k, plain.ppl, plain.tokens_per_s)

    for fit in config.fit_configs():
        routers = fitted_routers(converted, fit, config.work_dir, stage)
        name = f"adamoe-target-{fit.target_real:g}"
        rows.append(adamoe_row(name, model, windows, routers, config.base_k, measured[config.base_k], config.repeats))
        logger.info("%s: %.2f real experts, ppl %.2f", name, rows[-1].avg_real_experts, rows[-1].ppl)
    return [dense_row, *rows]


def fitted_routers(converted, fit: AdaMoEFitConfig, work_dir: Path | None, stage: Stage) -> AdaMoERouters:
    """Return AdaMoE routers for `converted` at its current top-k: read from `work_dir` if fitted there before.

    A fit is saved as an AdaMoE artifact named after its settings. Its training checkpoints are kept beside
    it, so an interrupted fit resumes.
    """
    if work_dir is None:
        return fit_adamoe(converted, fit, stage=stage)[0]
    base_k = converted.model.config.num_experts_per_tok
    path = work_dir / (
        f"adamoe-base{base_k}-null{fit.num_null}-slots{fit.top_k}-target{fit.target_real:g}-steps{fit.steps}"
    )
    if path.is_dir():
        logger.info("reusing the AdaMoE routers in %s", path)
        return load_adamoe(path, converted)
    routers, report = fit_adamoe(converted, fit, checkpoint_dir=path.with_name(path.name + ".checkpoint"), stage=stage)
    save_adamoe(path, routers, converted, report)
    return routers


# Tiny random-weight models of two stock transformers MoE classes, to show the runtime on them. Their
# perplexity means nothing; the rows show that top-k and AdaMoE routing run and cut expert FLOPs.
TINY_EXPERTS, TINY_TOP_K, TINY_VOCAB = 8, 2, 256


def _tiny_model(kind: str) -> PreTrainedModel:
    from transformers import MixtralConfig, MixtralForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

    common = dict(
        vocab_size=TINY_VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=128, num_experts_per_tok=TINY_TOP_K,
    )
    torch.manual_seed(0)
    if kind == "mixtral":
        return MixtralForCausalLM(MixtralConfig(intermediate_size=128, num_local_experts=TINY_EXPERTS, **common)).eval()
    if kind == "qwen3_moe":
        config = Qwen3MoeConfig(
            intermediate_size=128, moe_intermediate_size=64, num_experts=TINY_EXPERTS, norm_topk_prob=True,
            head_dim=16, **common,
        )
        return Qwen3MoeForCausalLM(config).eval()
    raise InvalidArgumentError(f"no tiny model of kind {kind!r}; use mixtral or qwen3_moe")


def tiny_rows(kind: str, stage: Stage, adamoe_steps: int = 20) -> list[MoeRow]:
    """Rows for a tiny random Mixtral or Qwen3-MoE: stock forward, top-1/2/4 and AdaMoE with a target of 1.5."""
    from leanlm.moe.adamoe import null_expert_routers
    from leanlm.moe.adamoe.train import AdaMoETrainConfig, train_routers
    from leanlm.runtime.moe import softmax_top_k

    model = _tiny_model(kind)
    windows = torch.randint(0, TINY_VOCAB, (8, 64), generator=torch.Generator().manual_seed(0))  # [N, T]
    stock = measure(model, windows, use_runtime=False)

    def top_k(k: int) -> RoutingPolicy:
        # both tiny configs renormalise the chosen probabilities (Mixtral always, Qwen3-MoE by norm_topk_prob)
        return lambda logits, layer, hidden: softmax_top_k(logits, k, renormalize=True, weight_dtype=hidden.dtype)

    rows, measured = top_k_rows(model, windows, [1, 2, 4], TINY_TOP_K, top_k, stage)
    routers = null_expert_routers(model, num_null=TINY_EXPERTS, top_k=3)
    train_routers(model, routers, windows, AdaMoETrainConfig(target_real=1.5, steps=adamoe_steps, batch=4, bias_rate=0.1))
    rows.append(adamoe_row("adamoe-target-1.5", model, windows, routers, TINY_TOP_K, measured[TINY_TOP_K]))
    stock_row = MoeRow("stock", float(TINY_TOP_K), 1.0, stock.ppl, stock.tokens_per_s)
    return [stock_row, *rows]
