"""`leanlm sift run` and `leanlm sift report`."""

import json
from pathlib import Path

import typer

from leanlm.cli.console import check_output_path, console, load_with_status, progress_bar
from leanlm.models import DEFAULT_MODEL

app = typer.Typer(help="SIFT: grounded reasoning with stickers, over the local model or an HTTP server.", no_args_is_help=True)

RECORDS_FILE = "sift.jsonl"
BASELINES_FILE = "baselines.json"


@app.command("run")
def run(
    out: Path = typer.Option(..., "--out", help="Directory for the per-item records (sift.jsonl); a rerun resumes."),
    dataset: str = typer.Option("gsm-symbolic", help="Reasoning-gym dataset name, or a JSONL file of {question, answer}."),
    n: int = typer.Option(200, "--n", help="Number of items."),
    seed: int = typer.Option(0, help="Seed of the generated items."),
    backend: str = typer.Option("local", help="'local' for the leanlm model, or the base URL of an OpenAI-compatible server."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Local: registry name, file or directory. HTTP: the server's model name."),
    max_new_tokens: int = typer.Option(512, help="Tokens per prediction."),
    batch_size: int = typer.Option(8, help="Local backend: requests per generation batch."),
    concurrency: int = typer.Option(8, help="HTTP backend: requests in flight at once."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", help="HTTP backend: environment variable that contains the API key."),
    baselines: bool = typer.Option(
        True, "--baselines/--no-baselines",
        help="Also run zero-shot chain of thought and self-consistency with about SIFT's tokens per item.",
    ),
):
    """Answer reasoning items with SIFT, writing one JSONL record per finished item."""
    from leanlm.data import reasoning_tasks
    from leanlm.sift.pipeline import Sift, SiftConfig, SiftItem

    check_output_path(out / RECORDS_FILE, "--out")
    config = SiftConfig(max_new_tokens=max_new_tokens)
    items = [SiftItem(task.id, task.question, task.answer) for task in reasoning_tasks(dataset, n, seed)]
    with _backend(backend, model, batch_size, concurrency, api_key_env) as chat:
        with progress_bar("SIFT", len(items)) as advance:
            records = Sift(chat, config).run(items, out / RECORDS_FILE, progress=advance)
        if baselines and not (out / BASELINES_FILE).exists():
            _run_baselines(chat, items, records, max_new_tokens, out / BASELINES_FILE)
    _print_summary(records, _read_baselines(out))


def _run_baselines(chat, items, records, max_new_tokens: int, path: Path) -> None:
    """Run zero-shot chain of thought, then self-consistency with about SIFT's tokens per item; write JSON."""
    from dataclasses import asdict

    from leanlm.cli.console import write_json
    from leanlm.sift.baselines import samples_for_budget, self_consistency, zero_shot_cot

    with progress_bar("zero-shot CoT", 1) as advance:
        zero_shot = zero_shot_cot(chat, items, max_new_tokens)
        advance(1)
    sift_tokens = sum(r.input_tokens + r.output_tokens for r in records) / len(records)
    chain_tokens = sum(r.input_tokens + r.output_tokens for r in zero_shot) / len(zero_shot)
    samples = samples_for_budget(sift_tokens, chain_tokens)
    with progress_bar(f"self-consistency ({samples} samples)", 1) as advance:
        voted = self_consistency(chat, items, samples, max_new_tokens)
        advance(1)
    write_json(path, {
        "zero_shot_cot": [asdict(r) for r in zero_shot],
        "self_consistency": [asdict(r) for r in voted],
        "self_consistency_samples": samples,
    })


def _read_baselines(directory: Path) -> dict | None:
    path = directory / BASELINES_FILE
    return json.loads(path.read_text()) if path.is_file() else None


@app.command("report")
def report(
    directory: Path = typer.Argument(..., help="The --out directory of `leanlm sift run`."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the report as JSON to this path."),
):
    """Accuracy, tokens per item and how many items each stage resolved."""
    from leanlm.cli.console import check_json_path, write_json
    from leanlm.errors import DataSourceError
    from leanlm.sift.pipeline import ItemRecord, read_records

    check_json_path(json_path)
    path = directory / RECORDS_FILE
    if not path.is_file():
        raise DataSourceError(f"{path} not found; pass the --out directory of `leanlm sift run`")
    records = [ItemRecord(**data) for data in read_records(path).values()]
    write_json(json_path, _print_summary(records, _read_baselines(directory)))


def _backend(backend: str, model: str, batch_size: int, concurrency: int, api_key_env: str):
    from leanlm.errors import InvalidArgumentError
    from leanlm.runtime.backends import LocalBackend, OpenAICompatibleBackend

    if backend == "local":
        return LocalBackend(load_with_status(model), batch_size=batch_size)
    if backend.startswith(("http://", "https://")):
        return OpenAICompatibleBackend(backend, model, api_key_env=api_key_env, concurrency=concurrency)
    raise InvalidArgumentError(f"--backend must be 'local' or an http(s) URL, got {backend!r}")


def _print_summary(records, baselines: dict | None = None) -> dict:
    """Print and return accuracy per method, tokens per item and the items each stage resolved.

    SIFT after stage s answers the items resolved by stage s. The other items take the zero-shot chain of
    thought's answer, because that is SIFT's fallback prompt. Without baselines only the final accuracy is known.
    """
    from leanlm.sift.pipeline import FALLBACK, STAGES
    from leanlm.sift.sticker import follows_sticker_format

    total = len(records)
    rows = [_row("sift", [r.correct for r in records], [r.input_tokens + r.output_tokens for r in records])]
    if baselines:
        zero_shot = {r["id"]: r for r in baselines["zero_shot_cot"]}
        rows.append(_row("zero_shot_cot", [r["correct"] for r in zero_shot.values()],
                         [r["input_tokens"] + r["output_tokens"] for r in zero_shot.values()]))
        for index, stage in enumerate(STAGES, start=1):
            done = set(STAGES[:index])
            correct = [r.correct if r.stage in done else zero_shot[r.id]["correct"] for r in records]
            rows.append(_row(f"sift_{stage}", correct, None))
        voted = baselines["self_consistency"]
        rows.append(_row("self_consistency", [r["correct"] for r in voted], [r["input_tokens"] + r["output_tokens"] for r in voted]))

    summary = {
        "items": total,
        "rows": rows,
        "resolved_by_stage": {stage: sum(r.stage == stage for r in records) for stage in (*STAGES, FALLBACK)},
        "sticker_format_rate": sum(follows_sticker_format(r.stickers.get("stage1")) for r in records) / total if total else 0.0,
    }
    for row in rows:
        accuracy = "-" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
        tokens = "" if row["tokens_per_item"] is None else f", {row['tokens_per_item']:.0f} tokens per item"
        console.print(f"{row['method']}: accuracy {accuracy}{tokens}", highlight=False)
    console.print(
        f"{total} items; stage-1 stickers in format {summary['sticker_format_rate']:.2f}; resolved by stage: "
        + ", ".join(f"{stage} {count}" for stage, count in summary["resolved_by_stage"].items()),
        highlight=False,
    )
    return summary


def _row(method: str, correct: list, tokens: list | None) -> dict:
    graded = [c for c in correct if c is not None]
    return {
        "method": method,
        "accuracy": sum(graded) / len(graded) if graded else None,
        "tokens_per_item": sum(tokens) / len(tokens) if tokens else None,
        "n": len(correct),
    }
