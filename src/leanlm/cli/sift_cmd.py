"""`leanlm sift run` and `leanlm sift report`."""

from pathlib import Path

import typer

from leanlm.cli.console import chat_backend, check_output_path, console, progress_bar
from leanlm.models import DEFAULT_MODEL

app = typer.Typer(help="SIFT: grounded reasoning with stickers, over the local model or an HTTP server.", no_args_is_help=True)


@app.command("run")
def run(
    out: Path = typer.Option(..., "--out", help="Directory for the per-item records (sift.jsonl); a rerun resumes."),
    dataset: str = typer.Option("gsm-symbolic", help="Reasoning-gym dataset name, or a JSONL file of {question, answer}."),
    n: int = typer.Option(200, "--n", help="Number of items."),
    seed: int = typer.Option(0, help="Seed of the generated items."),
    backend: str = typer.Option("local", help="'local' for the leanlm model, or the base URL of an OpenAI-compatible server."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Local: registry name, file or directory. HTTP: the server's model name."),
    max_new_tokens: int = typer.Option(512, help="Tokens per prediction (and per zero-shot chain of thought)."),
    sticker_tokens: int = typer.Option(256, help="Tokens per sticker request."),
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
    from leanlm.sift.evaluate import RECORDS_FILE, run_with_baselines
    from leanlm.sift.pipeline import SiftConfig, SiftItem

    check_output_path(out / RECORDS_FILE, "--out")
    config = SiftConfig(max_new_tokens=max_new_tokens, sticker_tokens=sticker_tokens)
    items = [SiftItem(task.id, task.question, task.answer) for task in reasoning_tasks(dataset, n, seed)]
    with chat_backend(backend, model, batch_size, concurrency, api_key_env) as chat:
        settings = {"dataset": dataset, "n": n, "seed": seed, "model": model, "backend": backend}
        records, baseline_records = run_with_baselines(chat, items, out, config, progress_bar, baselines, settings)
    _print_summary(records, baseline_records)


@app.command("report")
def report(
    directory: Path = typer.Argument(..., help="The --out directory of `leanlm sift run`."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the report as JSON to this path."),
):
    """Accuracy, tokens per item and how many items each stage resolved."""
    from leanlm.cli.console import check_json_path, write_json
    from leanlm.errors import DataSourceError
    from leanlm.sift.evaluate import RECORDS_FILE, read_run

    check_json_path(json_path)
    if not (directory / RECORDS_FILE).is_file():
        raise DataSourceError(f"{directory / RECORDS_FILE} not found; pass the --out directory of `leanlm sift run`")
    write_json(json_path, _print_summary(*read_run(directory)))


def _print_summary(records, baselines: dict | None = None) -> dict:
    """Print and return the summary of a run (see `leanlm.sift.evaluate.summarize`)."""
    from leanlm.sift.evaluate import summarize

    summary = summarize(records, baselines)
    for row in summary["rows"]:
        accuracy = "-" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
        tokens = "" if row["tokens_per_item"] is None else f", {row['tokens_per_item']:.0f} tokens per item"
        console.print(f"{row['method']}: accuracy {accuracy}{tokens}", highlight=False)
    console.print(
        f"{summary['items']} item{'' if summary['items'] == 1 else 's'}; stage-1 stickers in format {summary['sticker_format_rate']:.2f}; resolved by stage: "
        + ", ".join(f"{stage} {count}" for stage, count in summary["resolved_by_stage"].items()),
        highlight=False,
    )
    return summary
