"""`leanlm generate`: stream a continuation or a chat reply from a model."""

from pathlib import Path

import typer

from leanlm.cli.console import KV_HELP, console, err_console, load_with_status
from leanlm.models import DEFAULT_MODEL

DEFAULT_PROMPT = "Explain in three sentences why a language model needs a KV cache when it generates text."


def generate(
    prompts: list[str] = typer.Argument(None, help="Prompts; several run as one batch. Default: a built-in one."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Registry name, .gguf file, local directory or hub id."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", "-n", help="Maximum tokens to generate per prompt."),
    temperature: float = typer.Option(0.0, help="Sampling temperature; 0 is greedy decoding."),
    top_k: int = typer.Option(0, help="When sampling, keep only the k most likely tokens; 0 keeps all."),
    top_p: float = typer.Option(1.0, help="When sampling, keep the smallest set of tokens with this probability mass; 1 keeps all."),
    seed: int | None = typer.Option(None, help="Random seed for sampling (default: unseeded)."),
    stop: list[str] = typer.Option(None, "--stop", help="Stop a row when this text appears; the text is not printed. Repeatable."),
    chat: bool | None = typer.Option(None, "--chat/--no-chat", help="Wrap prompts in the chat template. Default: when the model has one."),
    system: str | None = typer.Option(None, help="System message for chat mode."),
    kv: list[Path] = typer.Option(None, "--kv", help=KV_HELP),
    adamoe: Path | None = typer.Option(None, "--adamoe", help="AdaMoE artifact (leanlm moe fit adamoe) that routes the MoE model's layers."),
):
    """Generate text, then print one line of figures on stderr: tokens, tokens/s and KV-cache bytes."""
    from leanlm.kv import kv_cache_for
    from leanlm.moe.adamoe.artifact import adamoe_enabled
    from leanlm.runtime import SamplingConfig, generate as run_generation

    config = SamplingConfig(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        stop_strings=tuple(stop or ()),
    )
    loaded = load_with_status(model)
    prompts = list(prompts) if prompts else [DEFAULT_PROMPT]
    use_chat = loaded.tokenizer.chat_template is not None if chat is None else chat

    # one prompt streams; a batch prints each row when all are done
    on_text = _streamer(prompts[0]) if len(prompts) == 1 else None
    with adamoe_enabled(loaded, adamoe), kv_cache_for(kv, loaded) as cache:
        result = run_generation(
            loaded.model, loaded.tokenizer, prompts, config, chat=use_chat, system=system, cache=cache, on_text=on_text
        )

    if on_text is not None:
        console.print()
    else:
        for prompt, text in zip(prompts, result.texts):
            console.print(f"> {prompt}", style="bold", markup=False, highlight=False)
            console.print(text, markup=False, highlight=False)
    rows = f" over {len(prompts)} rows" if len(prompts) > 1 else ""
    err_console.print(
        f"prompt tokens: {sum(result.prompt_lengths)} | generated tokens: {result.generated_tokens}{rows} | "
        f"{result.tokens_per_second:.1f} tokens/s | KV cache: {result.kv_bytes / 2**20:.2f} MiB "
        f"({result.kv_bytes:,} bytes)",
        style="dim",
        highlight=False,
    )


def _streamer(prompt: str):
    """Return a callback that echoes the prompt once, when the first text arrives, then streams the text."""
    echoed = False

    def on_text(row: int, text: str) -> None:
        nonlocal echoed
        if not echoed:
            console.print(f"> {prompt}", style="bold", markup=False, highlight=False)
            echoed = True
        console.print(text, end="", markup=False, highlight=False)

    return on_text
