"""`leanlm bench ...`: benchmarks that print a table and write JSON."""

import platform
from pathlib import Path

import typer
from rich.table import Table

from leanlm import __version__
from leanlm.cli.console import check_json_path, console, load_with_status, parse_ints, progress_bar, write_json
from leanlm.models import DEFAULT_MODEL

app = typer.Typer(help="Benchmarks against a baseline or peer, measured in one run.", no_args_is_help=True)


@app.command("generate")
def generate(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Registry name, .gguf file, local directory or hub id."),
    contexts: str = typer.Option("512,4096", help="Prompt lengths in tokens, comma-separated."),
    batches: str = typer.Option("1,4", help="Batch sizes, comma-separated."),
    new_tokens: int = typer.Option(32, help="Tokens generated per row."),
    repeats: int = typer.Option(3, help="Alternating runs of each implementation per setting; medians are kept."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the results as JSON to this path."),
):
    """leanlm's generation loop against transformers `model.generate` (greedy): same tokens, tokens/s ratio."""
    from leanlm.bench.generate import bench_generate

    check_json_path(json_path)
    context_list, batch_list = parse_ints(contexts, "--contexts"), parse_ints(batches, "--batches")
    loaded = load_with_status(model)
    with progress_bar("bench generate", total=len(context_list) * len(batch_list)) as advance:
        rows = bench_generate(loaded, context_list, batch_list, new_tokens, repeats, progress=advance)

    table = Table(title=f"leanlm generate vs transformers generate ({model}, greedy, {new_tokens} new tokens)")
    for column in ("context", "batch", "identical", "leanlm tok/s", "transformers tok/s", "speed ratio"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            str(row.context),
            str(row.batch),
            "yes" if row.identical else "NO",
            f"{row.leanlm_tokens_per_s:.2f}",
            f"{row.transformers_tokens_per_s:.2f}",
            f"{row.speed_ratio:.3f}",
        )
    console.print(table)
    write_json(json_path, {"rows": [row.to_dict() for row in rows], "setup": _setup(model, repeats)})


def _setup(model: str, repeats: int) -> dict:
    import torch

    return {
        "model": model,
        "repeats": repeats,
        "leanlm_version": __version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "device": "cpu",
    }


@app.command("kv")
def kv(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Registry name, .gguf file, local directory or hub id."),
    windows: int = typer.Option(4, help="Evaluation windows of context + scored tokens."),
    train_steps: int = typer.Option(100, help="Matryoshka training steps before the rank search."),
    gate: Path | None = typer.Option(None, "--gate", help="Fitted Attention-Gate artifact to use instead of training a gate."),
    gate_steps: int = typer.Option(200, help="Attention-Gate training steps, when --gate is not given."),
    decode_contexts: str = typer.Option("4096,16384", help="Context lengths at which decode speed is timed."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the rows as JSON to this path."),
    png_path: Path | None = typer.Option(None, "--png", help="Write a plot of perplexity against budget here."),
):
    """Full cache, PCA, MatryoshkaKV (uniform and searched ranks), Attention-Gate, the two combined, and
    kvpress presses at equal KV bytes."""
    from leanlm.bench.kv import KVBenchConfig, bench_kv
    from leanlm.bench.plot import plot_ppl_by_budget

    check_json_path(json_path)
    config = KVBenchConfig(
        windows=windows, train_steps=train_steps, gate_path=gate, gate_steps=gate_steps,
        decode_contexts=parse_ints(decode_contexts, "--decode-contexts"),
    )
    loaded = load_with_status(model)
    rows, plans = bench_kv(loaded, config, stage=progress_bar)

    table = Table(title=f"KV cache methods on {model} ({config.context} context + {config.scored} scored tokens)")
    for column in ("method", "budget", "KV MiB", "ppl", "passkey", *[f"decode tok/s @{n}" for n in config.decode_contexts]):
        table.add_column(column, justify="right")
    for row in rows:
        speeds = [f"{row.decode_tokens_per_s[n]:.2f}" if n in row.decode_tokens_per_s else "-" for n in config.decode_contexts]
        passkey = "-" if row.passkey_acc is None else f"{row.passkey_acc:.2f}"
        table.add_row(row.method, f"{row.budget:.3f}", f"{row.kv_bytes / 2**20:.2f}", f"{row.ppl:.2f}", passkey, *speeds)
    console.print(table)

    payload = [row.to_dict() for row in rows]
    write_json(json_path, {"rows": payload, "plans": plans, "config": _plain(config), "setup": _setup(model, 1)})
    if png_path is not None:
        plot_ppl_by_budget(payload, png_path, f"KV cache compression on {model}")


def _plain(config) -> dict:
    """Return a dataclass config as JSON-ready values (paths as strings)."""
    from dataclasses import asdict

    return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(config).items()}
