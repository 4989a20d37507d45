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


@app.command("sift")
def sift(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Local: registry name, file or directory. HTTP: the server's model name."),
    backend: str = typer.Option("local", help="'local' for the leanlm model, or the base URL of an OpenAI-compatible server."),
    datasets: str | None = typer.Option(
        None, help="Comma-separated sets to run SIFT on, screened alone; default: every set, run where it passes the screening."
    ),
    n: int = typer.Option(200, "--n", help="Items per set."),
    screen_items: int = typer.Option(50, help="Items per candidate set in the zero-shot screening."),
    threshold: float = typer.Option(0.20, help="Zero-shot screening accuracy a set must exceed to be run."),
    max_new_tokens: int = typer.Option(192, help="Tokens per prediction (stickers get 128)."),
    batch_size: int = typer.Option(32, help="Local backend: requests per generation batch."),
    concurrency: int = typer.Option(8, help="HTTP backend: requests in flight at once."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", help="HTTP backend: environment variable that contains the API key."),
    work: Path | None = typer.Option(None, help="Directory for resumable per-set runs; default $LEANLM_HOME/bench/sift/<model>."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the rows as JSON to this path."),
):
    """Zero-shot chain of thought, SIFT stage by stage and self-consistency at matched tokens, per reasoning set."""
    from leanlm.bench.sift import METHODS, SiftBenchConfig, bench_sift
    from leanlm.cli.console import chat_backend
    from leanlm.home import leanlm_home
    from leanlm.sift.pipeline import SiftConfig

    check_json_path(json_path)
    chosen = tuple(datasets.split(",")) if datasets else None
    config = SiftBenchConfig(
        work_dir=work or leanlm_home() / "bench" / "sift" / _safe_name(model),
        datasets=chosen,
        **({"candidates": chosen} if chosen else {}),  # named sets are screened alone, for the record
        screen_items=screen_items, threshold=threshold, n=n,
        sift=SiftConfig(max_new_tokens=max_new_tokens, sticker_tokens=128),
    )
    with chat_backend(backend, model, batch_size, concurrency, api_key_env) as chat:
        payload = bench_sift(chat, config, progress_bar)

    screening = ", ".join(f"{row['dataset']} {row['zero_shot_accuracy']:.2f}" for row in payload["screening"])
    console.print(f"zero-shot screening ({screen_items} items each): {screening}", highlight=False)
    table = Table(title=f"SIFT and baselines on {model} ({n} items per set)")
    for column in ("set", "zero-shot CoT", "SIFT stage 1", "SIFT stage 2", "SIFT stage 3", "self-consistency", "sticker format"):
        table.add_column(column, justify="right")
    for name, details in payload["datasets"].items():
        rows = {row["method"]: row for row in payload["rows"] if row["dataset"] == name}
        cells = [f"{rows[m]['accuracy']:.3f} ({rows[m]['tokens_per_item']:.0f} tok)" for m in METHODS]
        table.add_row(name, *cells, f"{details['sticker_format_rate']:.2f}")
    console.print(table)
    payload["setup"] = _setup(model, 1) | {"backend": backend if backend == "local" else "http"}
    write_json(json_path, payload)


@app.command("moe")
def moe(
    model: str | None = typer.Option(
        None, "--model", "-m",
        help="Converted MoE directory (leanlm moe convert). Default: the default model converted once with --experts "
        "and cached under $LEANLM_HOME/moe.",
    ),
    experts: int = typer.Option(16, help="Experts per layer when converting the default model."),
    top_ks: str = typer.Option("2,4,8,12,16", help="Top-k values measured, comma-separated."),
    base_k: int = typer.Option(12, help="The top-k AdaMoE starts from and is compared with; one of --top-ks."),
    targets: str = typer.Option("11,10.2", help="AdaMoE targets: average real experts per token, comma-separated."),
    null_experts: int = typer.Option(8, help="Null experts per router for AdaMoE."),
    adamoe_top_k: int = typer.Option(14, help="AdaMoE slots per token over real and null experts."),
    adamoe_steps: int = typer.Option(100, help="AdaMoE router training steps per target."),
    windows: int = typer.Option(8, help="Evaluation windows."),
    window: int = typer.Option(256, help="Tokens per evaluation window."),
    tiny: bool = typer.Option(True, "--tiny/--no-tiny", help="Also run the rows on tiny random Mixtral and Qwen3-MoE models."),
    work: Path | None = typer.Option(
        None, help="Directory that keeps the fitted AdaMoE routers for reruns; default $LEANLM_HOME/bench/moe/<model>."
    ),
    json_path: Path | None = typer.Option(None, "--json", help="Write the rows as JSON to this path."),
    png_path: Path | None = typer.Option(None, "--png", help="Write a histogram of real experts per token here."),
):
    """Dense, top-k MoE and AdaMoE on a converted model: perplexity, tokens/s, real experts and expert FLOPs."""
    from leanlm.bench.moe import MoeBenchConfig, bench_moe, tiny_rows
    from leanlm.bench.plot import plot_real_experts_histogram
    from leanlm.cli.console import parse_floats
    from leanlm.home import leanlm_home

    check_json_path(json_path)
    config = MoeBenchConfig(
        windows=windows, window=window, top_ks=parse_ints(top_ks, "--top-ks"), base_k=base_k,
        targets=parse_floats(targets, "--targets"), num_null=null_experts, adamoe_top_k=adamoe_top_k,
        adamoe_steps=adamoe_steps,
    )
    dense = load_with_status(DEFAULT_MODEL if model is None else _base_model_of(Path(model)))
    converted = load_with_status(str(Path(model) if model else _converted_default(dense, experts, base_k)))
    config.work_dir = work or leanlm_home() / "bench" / "moe" / _safe_name(Path(converted.name).name)
    rows = [row.to_dict() for row in bench_moe(converted, dense, config, progress_bar)]
    tiny_results = {kind: [row.to_dict() for row in tiny_rows(kind, progress_bar)] for kind in ("mixtral", "qwen3_moe")} if tiny else {}

    for title, table_rows in [(f"MoE routing on {converted.name}", rows)] + [(f"tiny random {k}", r) for k, r in tiny_results.items()]:
        table = Table(title=title)
        table.add_column("method", no_wrap=True)  # names such as adamoe-target-10.2 stay whole
        for column in ("base", "real experts", "expert FLOPs ratio"):
            table.add_column(column, justify="right")
        table.add_column("ppl", justify="right", no_wrap=True)
        table.add_column("tokens/s", justify="right")
        for row in table_rows:
            table.add_row(
                row["method"], row.get("base", "-"), f"{row['avg_real_experts']:.2f}", f"{row['expert_flops_ratio']:.3f}",
                f"{row['ppl']:.2f}", f"{row['tokens_per_s']:.0f}",
            )
        console.print(table)
    write_json(json_path, {
        "rows": rows, "tiny": tiny_results, "config": _plain(config), "setup": _setup(converted.name, config.repeats),
    })
    if png_path is not None:
        shown = [row for row in rows if row["method"].startswith("adamoe") or row["method"] == f"top-{base_k}"]
        plot_real_experts_histogram(shown, png_path, f"Real experts per token: AdaMoE against top-{base_k}")


def _base_model_of(directory: Path) -> str:
    """Return the dense model a converted MoE directory was made from (its config.json's base_model)."""
    import json

    from leanlm.errors import ArtifactError

    try:
        return json.loads((directory / "config.json").read_text())["base_model"]
    except (OSError, ValueError, KeyError) as err:
        raise ArtifactError(
            f"{directory} is not a `leanlm moe convert` output (no base_model in its config.json); convert a model first"
        ) from err


def _converted_default(dense, experts: int, top_k: int) -> Path:
    """Return the cached conversion of the default model, converting and saving it the first time."""
    from leanlm.home import leanlm_home
    from leanlm.moe import ConvertConfig, convert_to_moe, save_moe_checkpoint

    path = leanlm_home() / "moe" / f"{_safe_name(dense.name)}-e{experts}"
    if not (path / "config.json").is_file():
        moe_model, report = convert_to_moe(dense, ConvertConfig(experts=experts, top_k=top_k), stage=progress_bar)
        save_moe_checkpoint(path, moe_model, dense, report)
    return path


def _safe_name(model: str) -> str:
    """Return a model spec as one directory name."""
    return "".join(char if char.isalnum() or char in "-_." else "_" for char in model)


def _plain(config) -> dict:
    """Return a dataclass config as JSON-ready values (paths as strings)."""
    from dataclasses import asdict

    return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(config).items()}
