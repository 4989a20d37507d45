"""`leanlm moe convert`: turn the dense default model into a GraniteMoe checkpoint and measure it."""

from pathlib import Path

import typer
from rich.table import Table

from leanlm.cli.console import check_output_path, console, load_with_status, parse_ints, progress_bar
from leanlm.models import DEFAULT_MODEL

app = typer.Typer(help="Mixture-of-experts models: convert a dense model into a routed MoE, fit AdaMoE routers.", no_args_is_help=True)


@app.command("convert")
def convert(
    out: Path = typer.Option(..., "--out", help="Directory to write the converted Hugging Face checkpoint to."),
    experts: int = typer.Option(16, "--experts", help="Experts per layer; must divide the MLP's intermediate size."),
    top_k: int = typer.Option(4, "--top-k", help="Experts each token uses, from 1 to --experts."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Llama model: registry name, .gguf file, local directory or hub id."),
    window: int = typer.Option(256, help="Calibration tokens per window."),
    calibration_windows: int = typer.Option(16, help="Calibration windows (the last one is held out to measure the routers)."),
    kmeans_iterations: int = typer.Option(30, help="Maximum steps of the balanced k-means that groups neurons into experts."),
    router_steps: int = typer.Option(0, help="Adam steps on each router after its least-squares fit."),
    eval_window: int = typer.Option(1024, help="Tokens per window of the evaluation split for the perplexity check."),
    eval_windows: int = typer.Option(8, help="Evaluation windows to score (the split starts with the Gutenberg story); 0 skips the check."),
    compare_top_k: str | None = typer.Option(
        None, help="Also score these top-k values, comma-separated (such as 2,8,16); the checkpoint keeps --top-k."
    ),
    seed: int = typer.Option(0, help="Seed of the k-means initialisation."),
):
    """Split each MLP into experts by neuron co-activation, fit a router per layer, save a GraniteMoe checkpoint.

    The checkpoint loads with plain `transformers.AutoModelForCausalLM.from_pretrained(OUT)`. With
    --top-k equal to --experts it computes the dense model's output.
    """
    from leanlm.data import token_windows
    from leanlm.errors import InvalidArgumentError
    from leanlm.moe import ConvertConfig, check_convertible, check_moe_output, convert_to_moe, save_moe_checkpoint

    check_output_path(out, "--out")
    check_moe_output(out)
    config = ConvertConfig(
        experts=experts, top_k=top_k, window=window, calibration_windows=calibration_windows,
        kmeans_iterations=kmeans_iterations, router_steps=router_steps, seed=seed,
    )
    if eval_windows < 0:
        raise InvalidArgumentError(f"--eval-windows must be 0 (no perplexity check) or more, got {eval_windows}")
    scored_top_k = [top_k]
    for k in parse_ints(compare_top_k, "--compare-top-k") if compare_top_k else ():
        if not 1 <= k <= experts:
            raise InvalidArgumentError(f"--compare-top-k values must be from 1 to --experts ({experts}), got {k}")
        if k not in scored_top_k:
            scored_top_k.append(k)
    loaded = load_with_status(model)
    check_convertible(loaded, config)
    # cut the evaluation windows now, so a bad --eval-window fails before the conversion, not after
    evaluation = token_windows(loaded.tokenizer, "evaluation", eval_window, eval_windows) if eval_windows else None

    moe, report = convert_to_moe(loaded, config, stage=progress_bar)
    if evaluation is not None:
        report["evaluation"] = _score(loaded, moe, scored_top_k, evaluation)
    save_moe_checkpoint(out, moe, loaded, report)

    console.print(
        f"wrote {out}: {experts} experts of {loaded.model.config.intermediate_size // experts} neurons per layer, "
        f"top-{top_k}, converted in {report['conversion_seconds']:.0f} s. On the held-out calibration window the "
        f"routers keep {report['capture_router_mean']:.3f} of the MLP output mass (oracle top-{top_k}: "
        f"{report['capture_oracle_mean']:.3f}).",
        highlight=False,
    )
    if evaluation is not None:
        _print_perplexity(report["evaluation"], experts)


def _score(loaded, moe, scored_top_k: list[int], windows) -> dict:
    """Score the dense model and the MoE at each top-k on evaluation windows; leave the MoE at the first top-k."""
    from leanlm.eval import perplexity
    from leanlm.moe import set_top_k

    implementation = moe.get_experts_implementation()
    if moe.device.type == "cpu":
        # transformers 5.25's default grouped_mm experts path ran a forward pass 1.3 to 1.8 times slower than
        # its eager loop on a 2-core CPU for this 135M model
        moe.set_experts_implementation("eager")
    perplexity_by_top_k = {}
    with progress_bar("perplexity", total=windows.shape[0] * (1 + len(scored_top_k))) as advance:
        dense = perplexity(loaded.model, windows, progress=advance)
        for k in scored_top_k:
            set_top_k(moe, k)
            perplexity_by_top_k[str(k)] = perplexity(moe, windows, progress=advance).ppl
    set_top_k(moe, scored_top_k[0])
    moe.set_experts_implementation(implementation)
    return {
        "split": "evaluation", "window": int(windows.shape[1]), "windows": int(windows.shape[0]),
        "tokens": dense.tokens, "dense_ppl": dense.ppl, "moe_ppl_by_top_k": perplexity_by_top_k,
    }


def _print_perplexity(evaluation: dict, experts: int) -> None:
    noun = "window" if evaluation["windows"] == 1 else "windows"
    table = Table(title=f"perplexity on {evaluation['windows']} evaluation {noun} of {evaluation['window']} tokens")
    table.add_column("model")
    table.add_column("experts used", justify="right")
    table.add_column("perplexity", justify="right")
    table.add_row("dense", "all", f"{evaluation['dense_ppl']:.3f}")
    for k, ppl in sorted(evaluation["moe_ppl_by_top_k"].items(), key=lambda item: int(item[0])):
        table.add_row("MoE", f"{k} of {experts}", f"{ppl:.3f}")
    console.print(table)


fit_app = typer.Typer(help="Fit routing methods on an MoE model.", no_args_is_help=True)
app.add_typer(fit_app, name="fit")


@fit_app.command("adamoe")
def fit_adamoe_command(
    out: Path = typer.Option(..., "--out", help="Directory to write the AdaMoE artifact to; a rerun resumes its training."),
    model: str = typer.Option(..., "--model", "-m", help="MoE model: a `leanlm moe convert` output or any supported MoE checkpoint."),
    null_experts: int = typer.Option(8, "--null-experts", help="Null experts added to each router; they compute nothing."),
    top_k: int = typer.Option(6, "--top-k", help="Slots per token over real and null experts."),
    target_real: float | None = typer.Option(
        None, help="Target average of real experts per token; each layer's null bias is steered toward it."
    ),
    steps: int = typer.Option(200, help="Training steps."),
    batch: int = typer.Option(4, help="Calibration windows per step."),
    window: int = typer.Option(256, help="Calibration tokens per window."),
    calibration_windows: int = typer.Option(64, help="Calibration windows (the last one is held out for the report)."),
    learning_rate: float = typer.Option(1e-3, help="Adam learning rate of the routers."),
    balance_weight: float = typer.Option(0.01, help="Weight of the AdaMoE load-balancing loss."),
):
    """Add null experts to every router and fine-tune the routers on calibration text (AdaMoE).

    Training checkpoints go to OUT.checkpoint; running the same command again resumes from them.
    """
    from leanlm.artifacts import check_replaceable
    from leanlm.moe.adamoe.artifact import KIND, save_adamoe
    from leanlm.moe.adamoe.fit import AdaMoEFitConfig, fit_adamoe

    check_output_path(out, "--out")
    check_replaceable(out, KIND)
    config = AdaMoEFitConfig(
        num_null=null_experts, top_k=top_k, target_real=target_real, steps=steps, batch=batch, window=window,
        calibration_windows=calibration_windows, learning_rate=learning_rate, balance_weight=balance_weight,
    )
    loaded = load_with_status(model)
    checkpoint_dir = out.with_name(out.name + ".checkpoint")
    routers, report = fit_adamoe(loaded, config, checkpoint_dir=checkpoint_dir, stage=progress_bar)
    save_adamoe(out, routers, loaded, report)

    held_out = report["held_out"]
    console.print(
        f"wrote {out}: {held_out['avg_real_experts']:.2f} real experts per token and layer (base top-{report['base_top_k']}); "
        f"held-out perplexity {held_out['adamoe_ppl']:.3f} against {held_out['base_ppl']:.3f} with the base routing",
        highlight=False,
    )

