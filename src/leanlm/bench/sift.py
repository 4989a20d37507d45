"""SIFT against zero-shot chain of thought and self-consistency at matched tokens, per reasoning set.

The benchmark first screens each candidate set: zero-shot chain of thought on a few items of another seed
than the evaluation items. SIFT is then run on the sets whose screening accuracy is above a threshold, because
on sets the model cannot solve at all every method scores zero and nothing is compared. Every stage writes
into a work directory (screening accuracies, then one resumable `leanlm sift run` directory per set), so an
interrupted benchmark resumes where it stopped.
"""

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from leanlm.data import REASONING_DATASETS, reasoning_tasks
from leanlm.errors import InvalidArgumentError
from leanlm.runtime.backends import ChatBackend
from leanlm.sift.baselines import zero_shot_cot
from leanlm.sift.evaluate import Stage, run_with_baselines, summarize
from leanlm.sift.pipeline import SiftConfig, SiftItem

logger = logging.getLogger(__name__)

# methods of the benchmark's rows, in table order
METHODS = ("zero_shot_cot", "sift_stage1", "sift_stage2", "sift_stage3", "self_consistency")


@dataclass
class SiftBenchConfig:
    work_dir: Path
    candidates: tuple[str, ...] = tuple(REASONING_DATASETS)  # sets screened
    datasets: tuple[str, ...] | None = None  # sets to run SIFT on, or None for those that pass the screening
    screen_items: int = 50
    screen_seed: int = 1  # the evaluation items use `seed`, so the screening never uses them
    threshold: float = 0.20  # screening accuracy a set must exceed
    n: int = 200
    seed: int = 0
    sift: SiftConfig = field(default_factory=lambda: SiftConfig(max_new_tokens=192, sticker_tokens=128))

    def __post_init__(self) -> None:
        unknown = [name for name in (*self.candidates, *(self.datasets or ())) if name not in REASONING_DATASETS]
        if unknown:
            raise InvalidArgumentError(
                f"unknown reasoning set(s) {', '.join(unknown)}; use names from: {', '.join(REASONING_DATASETS)}"
            )
        if self.screen_items < 1 or self.n < 1:
            raise InvalidArgumentError(f"--screen-items and --n must be positive, got {self.screen_items} and {self.n}")
        if not 0.0 <= self.threshold < 1.0:
            raise InvalidArgumentError(f"--threshold must be in [0, 1), got {self.threshold}")


def bench_sift(backend: ChatBackend, config: SiftBenchConfig, stage: Stage) -> dict:
    """Screen the candidate sets, run SIFT and the baselines on the chosen ones, and return the JSON payload.

    The payload has `rows` (dataset, method, accuracy, tokens_per_item, n), `screening` (zero-shot accuracy
    per candidate), and per chosen set the sticker-format rate, items resolved per stage and self-consistency
    samples.
    """
    screening = _screen(backend, config, stage)
    chosen = config.datasets or tuple(name for name, accuracy in screening.items() if accuracy > config.threshold)
    if not chosen:
        logger.warning("no candidate set has zero-shot accuracy above %.2f; SIFT runs on none", config.threshold)

    rows, details = [], {}
    for name in chosen:
        summary, samples = _run_set(backend, config, name, stage)
        rows.extend(_dataset_rows(name, summary))
        details[name] = {
            "sticker_format_rate": summary["sticker_format_rate"],
            "resolved_by_stage": summary["resolved_by_stage"],
            "self_consistency_samples": samples,
        }
    return {
        "rows": rows,
        "screening": [
            {"dataset": name, "zero_shot_accuracy": accuracy, "n": config.screen_items, "chosen": name in chosen}
            for name, accuracy in screening.items()
        ],
        "datasets": details,
        "config": _plain(config),
        "definitions": {
            "sift_stageN": "SIFT stopped after stage N: items resolved by stages 1..N take SIFT's answer, the rest the "
            "zero-shot chain of thought (SIFT's fallback); tokens include that chain for the unresolved items",
            "self_consistency": "majority vote over as many sampled chains as fit in SIFT's tokens per item",
            "chosen": "run because its screening accuracy exceeds the threshold, or because --datasets named it",
        },
    }


def _screen(backend: ChatBackend, config: SiftBenchConfig, stage: Stage) -> dict[str, float]:
    """Return zero-shot chain-of-thought accuracy per candidate set, reading earlier screenings from the work dir."""
    path = config.work_dir / "screening.json"
    done = json.loads(path.read_text()) if path.is_file() else {}
    key = f"items={config.screen_items} seed={config.screen_seed} max_new_tokens={config.sift.max_new_tokens}"
    done = done.get(key, {})

    with stage("screening", len(config.candidates)) as advance:
        for name in config.candidates:
            if name not in done:
                items = _items(name, config.screen_items, config.screen_seed)
                records = zero_shot_cot(backend, items, config.sift.max_new_tokens)
                done[name] = sum(bool(r.correct) for r in records) / len(records)
                _save_screening(path, key, done)
                logger.info("screening %s: zero-shot accuracy %.2f", name, done[name])
            advance(1)
    return {name: done[name] for name in config.candidates}


def _save_screening(path: Path, key: str, accuracies: dict[str, float]) -> None:
    everything = json.loads(path.read_text()) if path.is_file() else {}
    everything[key] = accuracies
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(everything, indent=1) + "\n")
    partial.replace(path)


def _run_set(backend: ChatBackend, config: SiftBenchConfig, name: str, stage: Stage) -> tuple[dict, int]:
    directory = config.work_dir / f"{name}-n{config.n}-seed{config.seed}-tokens{config.sift.max_new_tokens}"
    items = _items(name, config.n, config.seed)
    settings = {"dataset": name, "n": config.n, "seed": config.seed}
    records, baselines = run_with_baselines(backend, items, directory, config.sift, stage, settings=settings)
    return summarize(records, baselines), baselines["self_consistency_samples"]


def _items(name: str, n: int, seed: int) -> list[SiftItem]:
    return [SiftItem(task.id, task.question, task.answer) for task in reasoning_tasks(name, n, seed)]


def _dataset_rows(name: str, summary: dict) -> list[dict]:
    by_method = {row["method"]: row for row in summary["rows"]}
    return [{"dataset": name} | by_method[method] for method in METHODS]


def _plain(config: SiftBenchConfig) -> dict:
    values = asdict(config)
    values["work_dir"] = str(config.work_dir)
    return values

