"""leanlm's generation loop against plain transformers `model.generate`, same model and prompts, greedy.

Each setting (context tokens, batch size) runs both implementations alternately `repeats` times on the same
prompts (real prose windows of the evaluation split) and compares their tokens and their median tokens/s.
Alternating keeps a slow spell of a shared machine from landing on one side only.
"""

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from leanlm.data import token_windows
from leanlm.errors import InvalidArgumentError
from leanlm.models import LoadedModel
from leanlm.runtime import SamplingConfig, generate


@dataclass
class GenerateBenchRow:
    context: int
    batch: int
    new_tokens: int
    identical: bool
    leanlm_tokens_per_s: float
    transformers_tokens_per_s: float
    speed_ratio: float  # leanlm tokens/s over transformers tokens/s

    def to_dict(self) -> dict:
        return asdict(self)


def bench_generate(
    loaded: LoadedModel,
    contexts: tuple[int, ...] = (512, 4096),
    batches: tuple[int, ...] = (1, 4),
    new_tokens: int = 32,
    repeats: int = 3,
    progress: Callable[[int], None] | None = None,
) -> list[GenerateBenchRow]:
    """Return one row per (context, batch) setting."""
    if repeats <= 0:
        raise InvalidArgumentError(f"repeats must be a positive integer, got {repeats}")
    config = SamplingConfig(max_new_tokens=new_tokens)
    _warm_up(loaded, config)

    rows = []
    for context in contexts:
        windows = token_windows(loaded.tokenizer, "evaluation", context)
        for batch in batches:
            if windows.shape[0] < batch:
                raise InvalidArgumentError(
                    f"the evaluation split has {windows.shape[0]} windows of {context} tokens, fewer than batch {batch}"
                )
            rows.append(_bench_setting(loaded, windows[:batch], config, repeats))
            if progress:
                progress(1)
    return rows


def _bench_setting(loaded: LoadedModel, prompts: torch.Tensor, config: SamplingConfig, repeats: int):
    ours, theirs = [], []
    for _ in range(repeats):
        ours_tokens, ours_speed = _run_leanlm(loaded, prompts, config)
        theirs_tokens, theirs_speed = _run_transformers(loaded, prompts, config)
        ours.append(ours_speed)
        theirs.append(theirs_speed)

    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    return GenerateBenchRow(
        context=prompts.shape[1],
        batch=prompts.shape[0],
        new_tokens=config.max_new_tokens,
        identical=ours_tokens == theirs_tokens,
        leanlm_tokens_per_s=ours_median,
        transformers_tokens_per_s=theirs_median,
        speed_ratio=ours_median / theirs_median,
    )


def _run_leanlm(loaded: LoadedModel, prompts: torch.Tensor, config: SamplingConfig):
    started = time.perf_counter()
    out = generate(loaded.model, loaded.tokenizer, prompts.tolist(), config)
    elapsed = time.perf_counter() - started
    return out.tokens, out.generated_tokens / elapsed


def _run_transformers(loaded: LoadedModel, prompts: torch.Tensor, config: SamplingConfig):
    eos = loaded.model.generation_config.eos_token_id
    eos = {eos} if isinstance(eos, int) else set(eos or [])
    started = time.perf_counter()
    with torch.inference_mode():
        out = loaded.model.generate(
            input_ids=prompts,
            attention_mask=torch.ones_like(prompts),
            max_new_tokens=config.max_new_tokens,
            do_sample=False,
        )
    elapsed = time.perf_counter() - started
    tokens = [_cut_at_eos(row.tolist(), eos) for row in out[:, prompts.shape[1] :]]
    return tokens, sum(len(row) for row in tokens) / elapsed


def _cut_at_eos(row: list[int], eos: set[int]) -> list[int]:
    for i, token in enumerate(row):
        if token in eos:
            return row[: i + 1]
    return row


def _warm_up(loaded: LoadedModel, config: SamplingConfig) -> None:
    """Run both paths once on a short prompt so one-time setup costs land on neither side's figures."""
    prompt = token_windows(loaded.tokenizer, "evaluation", 64, max_windows=1)
    short = SamplingConfig(max_new_tokens=4)
    _run_leanlm(loaded, prompt, short)
    _run_transformers(loaded, prompt, short)
