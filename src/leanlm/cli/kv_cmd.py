"""`leanlm kv fit ...`: fit a KV-cache compression method and save it as an artifact."""

from pathlib import Path

import typer

from leanlm.cli.console import check_output_path, console, load_with_status, progress_bar
from leanlm.models import DEFAULT_MODEL

app = typer.Typer(help="KV-cache compression: fit methods whose artifacts `--kv DIR` then uses.", no_args_is_help=True)
fit_app = typer.Typer(help="Fit a KV-cache method on the calibration split.", no_args_is_help=True)
app.add_typer(fit_app, name="fit")


@fit_app.command("matryoshka")
def matryoshka(
    out: Path = typer.Option(..., "--out", help="Directory to write the artifact to."),
    budget: float = typer.Option(0.5, help="Fraction of the full KV cache's bytes to keep, in (0, 1]."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Registry name, .gguf file, local directory or hub id."),
    steps: int = typer.Option(100, help="Matryoshka training steps; 0 keeps the PCA bases."),
    uniform: bool = typer.Option(False, "--uniform", help="Give every head the same rank instead of searching."),
    window: int = typer.Option(256, help="Calibration tokens per window."),
    calibration_windows: int = typer.Option(32, help="Calibration windows (the last one scores the rank search)."),
    search_rounds: int = typer.Option(
        10, help="Rounds of the greedy rank search; each round scores one trial per layer, KV head and keys/values."
    ),
    seed: int = typer.Option(0, help="Seed for the ranks drawn in training."),
):
    """PCA-initialised orthogonal projections, Matryoshka training, rank search under the budget.

    Training checkpoints go to OUT.checkpoint; running the same command again resumes from them.
    """
    from leanlm.artifacts import check_replaceable
    from leanlm.kv.matryoshka.fit import FitConfig, fit_matryoshka
    from leanlm.kv.matryoshka.method import KIND, save_matryoshka

    check_output_path(out, "--out")
    check_replaceable(out, KIND)
    config = FitConfig(
        budget=budget, steps=steps, search=not uniform, window=window,
        calibration_windows=calibration_windows, search_rounds=search_rounds, seed=seed,
    )
    loaded = load_with_status(model)
    checkpoint_dir = out.with_name(out.name + ".checkpoint")
    method, report = fit_matryoshka(loaded, config, checkpoint_dir=checkpoint_dir, stage=progress_bar)
    save_matryoshka(out, method, loaded, report)
    console.print(
        f"wrote {out}: budget {method.plan.budget:.3f}, key ranks {report['key_rank_total']}, "
        f"value ranks {report['value_rank_total']}, held-out KL {report['held_out_kl']:.4f}",
        highlight=False,
    )


@fit_app.command("gate")
def gate(
    out: Path = typer.Option(..., "--out", help="Directory to write the artifact to."),
    evict: float = typer.Option(0.5, help="Fraction of prompt tokens each layer evicts from the cache, in [0, 1)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Registry name, .gguf file, local directory or hub id."),
    steps: int = typer.Option(200, help="Training steps (one calibration window each); 0 keeps the random gates."),
    window: int = typer.Option(512, help="Calibration tokens per training window."),
    calibration_windows: int = typer.Option(32, help="Calibration windows (the last one is held out to score the gate)."),
    sinks: int = typer.Option(4, help="First tokens of a prompt that are always kept."),
    recent: int = typer.Option(64, help="Last tokens of a prompt that are always kept; every query sees this many recent tokens."),
    seed: int = typer.Option(0, help="Seed for the gates' initial weights."),
):
    """Train a gate per attention layer that picks the prompt tokens each KV head keeps.

    Training checkpoints go to OUT.checkpoint; running the same command again resumes from them.
    """
    from leanlm.artifacts import check_replaceable
    from leanlm.eval import continuation_perplexity
    from leanlm.kv.gate.fit import GateFitConfig, fit_gate
    from leanlm.kv.gate.method import KIND, save_gate

    check_output_path(out, "--out")
    check_replaceable(out, KIND)
    config = GateFitConfig(
        evict=evict, steps=steps, window=window, calibration_windows=calibration_windows,
        sinks=sinks, recent=recent, seed=seed,
    )
    loaded = load_with_status(model)
    checkpoint_dir = out.with_name(out.name + ".checkpoint")
    method, report, held_out = fit_gate(loaded, config, checkpoint_dir=checkpoint_dir, stage=progress_bar)

    # score the held-out calibration window: three quarters as context, the rest as continuation
    context = held_out.shape[1] * 3 // 4
    with progress_bar("held-out score", 2) as advance:
        full = continuation_perplexity(loaded.model, held_out, context, progress=advance)
        with method.enabled(loaded.model):
            gated = continuation_perplexity(loaded.model, held_out, context, cache=method.cache, progress=advance)
    report |= {
        "held_out_context": context, "held_out_ppl_full": full.ppl, "held_out_ppl_gate": gated.ppl,
        "held_out_kv_bytes_full": full.kv_bytes, "held_out_kv_bytes_gate": gated.kv_bytes,
    }
    save_gate(out, method, loaded, report)
    console.print(
        f"wrote {out}: eviction ratio {evict:.2f}. Held-out text, {context} context tokens: perplexity "
        f"{gated.ppl:.3f} (full cache {full.ppl:.3f}), KV bytes {gated.kv_bytes:,} = "
        f"{gated.kv_bytes / full.kv_bytes:.3f} of the full cache's {full.kv_bytes:,}",
        highlight=False,
    )
