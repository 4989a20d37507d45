"""`leanlm generate`: stream a continuation or a chat answer from a model."""

import typer

from leanlm.cli.console import console, load_with_status
from leanlm.models import DEFAULT_MODEL
from leanlm.runtime import SamplingConfig, generate as run_generation

DEFAULT_PROMPT = "Explain in three sentences why a language model needs a KV cache when it generates text."


def generate(
    prompts: list[str] = typer.Argument(None, help="Prompts to answer; several run as one batch. Default: a built-in one."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Registry name, .gguf file, local directory or hub id."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", "-n", help="Maximum tokens to generate per prompt."),
    temperature: float = typer.Option(0.0, help="Sampling temperature; 0 is greedy decoding."),
    top_k: int = typer.Option(0, help="Sample from the k most likely tokens only; 0 disables."),
    top_p: float = typer.Option(1.0, help="Sample from the smallest set of tokens with this probability mass."),
    seed: int | None = typer.Option(None, help="Random seed for sampling."),
    stop: list[str] = typer.Option(None, "--stop", help="Stop a row when this text appears (repeatable)."),
    chat: bool | None = typer.Option(None, "--chat/--no-chat", help="Wrap prompts in the chat template. Default: when the model has one."),
    system: str | None = typer.Option(None, help="System message for chat mode."),
):
    """Generate text and end with one line of figures: tokens, tokens/s and KV-cache bytes."""
    loaded = load_with_status(model)
    config = SamplingConfig(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        stop_strings=tuple(stop or ()),
    )
    prompts = list(prompts) if prompts else [DEFAULT_PROMPT]
    use_chat = loaded.tokenizer.chat_template is not None if chat is None else chat

    # stream when there is one row; a batch prints each row when all are done
    stream = len(prompts) == 1
    on_text = (lambda row, text: console.print(text, end="", markup=False, highlight=False)) if stream else None
    if stream:
        console.print(f"[bold]> {prompts[0]}[/bold]", highlight=False)
    result = run_generation(loaded.model, loaded.tokenizer, prompts, config, chat=use_chat, system=system, on_text=on_text)

    if stream:
        console.print()
    else:
        for prompt, text in zip(prompts, result.texts):
            console.print(f"[bold]> {prompt}[/bold]", highlight=False)
            console.print(text, markup=False, highlight=False)
    console.print(
        f"[dim]prompt tokens: {sum(result.prompt_lengths)} | generated tokens: {result.generated_tokens} | "
        f"{result.tokens_per_second:.1f} tokens/s | KV cache: {result.kv_bytes / 2**20:.2f} MiB "
        f"({result.kv_bytes:,} bytes)[/dim]",
        highlight=False,
    )
