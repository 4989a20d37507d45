"""`leanlm eval ppl` and `leanlm eval passkey`."""

from pathlib import Path

import typer

from leanlm.cli.console import KV_HELP, check_json_path, console, load_with_status, parse_floats, parse_ints, progress_bar, write_json
from leanlm.models import DEFAULT_MODEL

app = typer.Typer(help="Measure model quality on real prose: perplexity and passkey retrieval.", no_args_is_help=True)

MODEL_HELP = "Registry name, .gguf file, local directory or hub id."
ADAMOE_HELP = "AdaMoE artifact (leanlm moe fit adamoe) that routes the MoE model's layers."


@app.command("ppl")
def ppl(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help=MODEL_HELP),
    split: str = typer.Option("evaluation", help="Prose split to score: evaluation or calibration."),
    window: int = typer.Option(1024, help="Tokens per window."),
    max_windows: int | None = typer.Option(None, help="Score only the first N windows (the evaluation split starts with the Gutenberg story)."),
    context: int | None = typer.Option(
        None, help="Continuation mode: prefill this many tokens of each window into the KV cache, score the rest."
    ),
    batch_size: int = typer.Option(1, help="Windows per forward pass."),
    kv: list[Path] = typer.Option(None, "--kv", help=KV_HELP + " Needs --context."),
    adamoe: Path | None = typer.Option(None, "--adamoe", help=ADAMOE_HELP),
    json_path: Path | None = typer.Option(None, "--json", help="Write the results as JSON to this path."),
):
    """Perplexity over token windows, or context-compressed continuation perplexity with --context."""
    from leanlm.data import token_windows
    from leanlm.errors import InvalidArgumentError
    from leanlm.eval import continuation_perplexity, perplexity
    from leanlm.kv import kv_cache_for
    from leanlm.moe.adamoe.artifact import adamoe_enabled
    from leanlm.runtime import dynamic_cache

    check_json_path(json_path)
    if context is not None and context >= window:
        raise InvalidArgumentError(f"--context {context} must be smaller than --window {window}, so tokens remain to score")
    if kv and context is None:
        raise InvalidArgumentError("--kv compresses the KV cache, which only continuation perplexity uses; add --context N")
    loaded = load_with_status(model)
    windows = token_windows(loaded.tokenizer, split, window, max_windows)
    with (
        adamoe_enabled(loaded, adamoe) as routers,
        kv_cache_for(kv, loaded) as cache,
        progress_bar("perplexity", total=windows.shape[0]) as advance,
    ):
        if context is None:
            result = perplexity(loaded.model, windows, batch_size=batch_size, progress=advance)
        else:
            result = continuation_perplexity(
                loaded.model, windows, context, cache=cache or dynamic_cache, batch_size=batch_size, progress=advance
            )

    noun = "window" if result.windows == 1 else "windows"
    if result.kv_bytes is None:
        console.print(f"perplexity {result.ppl:.3f} over {result.tokens:,} tokens in {result.windows} {noun}")
    else:
        cache_name = "full cache" if not kv else "cache of " + " + ".join(str(path) for path in kv)
        console.print(
            f"continuation perplexity {result.ppl:.3f} over {result.tokens:,} tokens after {context} context tokens "
            f"in {result.windows} {noun}; {cache_name} after prefill: {result.kv_bytes / 2**20:.2f} MiB",
            highlight=False,
        )
    details = {
        "model": model, "split": split, "window": window, "context": context,
        "kv": [str(path) for path in kv] if kv else None, "adamoe": str(adamoe) if adamoe else None,
    }
    if routers is not None:
        details["avg_real_experts"] = routers.avg_real_experts_all()
        console.print(f"AdaMoE: {details['avg_real_experts']:.2f} real experts per token and layer over all windows")
    write_json(json_path, result.to_dict() | details)


@app.command("passkey")
def passkey(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help=MODEL_HELP),
    lengths: str = typer.Option("256,512,1024", help="Prompt lengths in tokens, comma-separated."),
    depths: str = typer.Option("0,0.25,0.5,0.75,1", help="Depths of the key in the context (0 = start, 1 = end)."),
    trials: int = typer.Option(4, help="Prompts per (length, depth) cell."),
    seed: int = typer.Option(0, help="Seed for the keys and the prose chosen."),
    batch_size: int = typer.Option(4, help="Prompts per generation batch."),
    kv: list[Path] = typer.Option(None, "--kv", help=KV_HELP),
    json_path: Path | None = typer.Option(None, "--json", help="Write the results, with every (length, depth) cell, as JSON."),
):
    """Passkey retrieval accuracy over context lengths and depths."""
    from leanlm.eval import PasskeyConfig, passkey_accuracy
    from leanlm.kv import kv_cache_for
    from leanlm.runtime import dynamic_cache

    check_json_path(json_path)
    config = PasskeyConfig(
        lengths=parse_ints(lengths, "--lengths"),
        depths=parse_floats(depths, "--depths"),
        trials=trials,
        seed=seed,
        batch_size=batch_size,
    )
    loaded = load_with_status(model)
    total = len(config.lengths) * len(config.depths) * config.trials
    with kv_cache_for(kv, loaded) as cache, progress_bar("passkey", total=total) as advance:
        result = passkey_accuracy(loaded.model, loaded.tokenizer, config, cache=cache or dynamic_cache, progress=advance)

    summary = result.to_dict()
    for length, accuracy in summary["by_length"].items():
        console.print(f"length {length:>6}: accuracy {accuracy:.2f}")
    console.print(f"overall accuracy {result.accuracy:.3f} (chance is about 1e-5)")
    write_json(json_path, summary | {"model": model})
