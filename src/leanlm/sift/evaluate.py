"""SIFT beside its baselines on one item set: run all three into a directory, then summarise accuracy and tokens.

A run directory contains `sift.jsonl` (one SIFT record per finished item) and `baselines.json` (zero-shot chain of
thought and self-consistency). A rerun resumes SIFT where it stopped and reuses finished baselines.
"""

import json
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict
from pathlib import Path

from leanlm.errors import DataSourceError, InvalidArgumentError
from leanlm.runtime.backends import ChatBackend
from leanlm.sift.baselines import samples_for_budget, self_consistency, zero_shot_cot
from leanlm.sift.pipeline import (
    FALLBACK,
    STAGES,
    ItemRecord,
    Sift,
    SiftConfig,
    SiftItem,
    read_records,
)
from leanlm.sift.sticker import follows_sticker_format

logger = logging.getLogger(__name__)

RECORDS_FILE = "sift.jsonl"
BASELINES_FILE = "baselines.json"
SETTINGS_FILE = "run.json"

# stage(description, total) opens a progress display and yields an advance(n) callback
Stage = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


def run_with_baselines(
    backend: ChatBackend,
    items: Sequence[SiftItem],
    directory: Path,
    config: SiftConfig,
    stage: Stage,
    baselines: bool = True,
    settings: dict | None = None,
) -> tuple[list[ItemRecord], dict | None]:
    """Run SIFT, then (unless `baselines` is False or they are already there) the two baselines.

    Self-consistency samples as many chains of thought per item as fit in SIFT's tokens per item.
    `settings` (such as dataset, model and seed) are stored with the run together with `config`, and a rerun
    into the same directory with other settings raises InvalidArgumentError rather than mixing two runs.
    Returns SIFT's records and the baselines as written to `baselines.json` (None when not run).
    """
    check_settings(directory, (settings or {}) | {"sift": asdict(config)})
    with stage("SIFT", len(items)) as advance:
        records = Sift(backend, config).run(items, directory / RECORDS_FILE, progress=advance)

    path = directory / BASELINES_FILE
    if baselines and not path.exists():
        _write_json(path, _run_baselines(backend, items, records, config.max_new_tokens, stage))
    return records, read_baselines(directory)


def _run_baselines(backend, items, records, max_new_tokens: int, stage: Stage) -> dict:
    with stage("zero-shot CoT", 1) as advance:
        zero_shot = zero_shot_cot(backend, items, max_new_tokens)
        advance(1)

    sift_tokens = sum(r.input_tokens + r.output_tokens for r in records) / len(records)
    chain_tokens = sum(r.input_tokens + r.output_tokens for r in zero_shot) / len(zero_shot)
    samples = samples_for_budget(sift_tokens, chain_tokens)
    with stage(f"self-consistency ({samples} samples)", 1) as advance:
        voted = self_consistency(backend, items, samples, max_new_tokens)
        advance(1)

    return {
        "zero_shot_cot": [asdict(r) for r in zero_shot],
        "self_consistency": [asdict(r) for r in voted],
        "self_consistency_samples": samples,
    }


def read_baselines(directory: Path) -> dict | None:
    """Return the baselines of a run directory, or None when it has none."""
    path = directory / BASELINES_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise DataSourceError(f"{path} is not valid JSON ({err}); delete it and rerun to run the baselines again") from err


def check_settings(directory: Path, settings: dict) -> None:
    """Store a run's settings in its directory, or raise InvalidArgumentError if the directory has other ones.

    A directory from before settings were stored is accepted, and its settings are stored now.
    """
    path = directory / SETTINGS_FILE
    settings = json.loads(json.dumps(settings))  # the JSON form, so tuples and lists compare equal
    if path.is_file():
        stored = json.loads(path.read_text())
        changed = sorted(key for key in stored.keys() | settings.keys() if stored.get(key) != settings.get(key))
        if changed:
            details = "; ".join(f"{key}: {stored.get(key)!r} before, {settings.get(key)!r} now" for key in changed)
            raise InvalidArgumentError(
                f"{directory} contains a run with other settings ({details}); rerun with the same settings to "
                "resume it, or choose a new output directory"
            )
        return
    _write_json(path, settings)


def _write_json(path: Path, payload: dict) -> None:
    """Write JSON through a temporary file, so an interrupted write leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(json.dumps(payload, indent=1) + "\n")
    partial.replace(path)


def summarize(records: Sequence[ItemRecord], baselines: dict | None = None) -> dict:
    """Return accuracy and tokens per item of each method, items resolved per stage, and the sticker-format rate.

    Rows: "sift" (the full run), then with baselines "zero_shot_cot", "sift_stage1".."sift_stage3" and
    "self_consistency". SIFT stopped after stage s answers the items resolved by stage s. For the rest it falls
    back to the zero-shot chain of thought, which is SIFT's own fallback prompt. Its tokens per item are
    therefore the tokens of stages 1..s, plus those of the zero-shot chain for unresolved items.
    """
    total = len(records)
    rows = [_row("sift", [r.correct for r in records], [r.input_tokens + r.output_tokens for r in records])]
    if baselines:
        zero_shot = {r["id"]: r for r in baselines["zero_shot_cot"]}
        rows.append(_row("zero_shot_cot", [r["correct"] for r in zero_shot.values()],
                         [_tokens(r) for r in zero_shot.values()]))
        for index, name in enumerate(STAGES, start=1):
            rows.append(_stage_row(name, set(STAGES[:index]), records, zero_shot))
        voted = baselines["self_consistency"]
        rows.append(_row("self_consistency", [r["correct"] for r in voted], [_tokens(r) for r in voted]))

    formatted = sum(follows_sticker_format(r.stickers.get("stage1")) for r in records)
    return {
        "items": total,
        "rows": rows,
        "resolved_by_stage": {name: sum(r.stage == name for r in records) for name in (*STAGES, FALLBACK)},
        "sticker_format_rate": formatted / total if total else 0.0,
    }


def _stage_row(name: str, done: set[str], records: Sequence[ItemRecord], zero_shot: dict[str, dict]) -> dict:
    correct = [r.correct if r.stage in done else zero_shot[r.id]["correct"] for r in records]
    if any(not r.tokens_by_stage for r in records):
        return _row(f"sift_{name}", correct, None)  # records written before tokens were split by stage

    tokens = [
        sum(r.tokens_by_stage.get(s, 0) for s in done) + (0 if r.stage in done else _tokens(zero_shot[r.id]))
        for r in records
    ]
    return _row(f"sift_{name}", correct, tokens)


def _tokens(record: dict) -> int:
    return record["input_tokens"] + record["output_tokens"]


def _row(method: str, correct: list, tokens: list | None) -> dict:
    graded = [c for c in correct if c is not None]
    return {
        "method": method,
        "accuracy": sum(graded) / len(graded) if graded else None,
        "tokens_per_item": sum(tokens) / len(tokens) if tokens else None,
        "n": len(correct),
    }


def read_run(directory: Path) -> tuple[list[ItemRecord], dict | None]:
    """Return the SIFT records and baselines of a run directory (records in file order)."""
    records = [ItemRecord(**data) for data in read_records(directory / RECORDS_FILE).values()]
    return records, read_baselines(directory)
