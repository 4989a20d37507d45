"""The one generation loop every leanlm method runs through.

Batched (left padding), greedy or sampled, streaming, stop strings, and a KV cache the caller may supply.
Greedy output equals transformers' `model.generate(do_sample=False)` token for token: the loop builds the
same position ids and masks, and computes logits for the last position only, as transformers does.

Shapes: B batch, T prompt tokens (padded), V vocabulary.
"""

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import Cache, PreTrainedModel, PreTrainedTokenizerBase

from leanlm.errors import ContextTooLongError
from leanlm.runtime.cache import CacheFactory, dynamic_cache, kv_cache_bytes
from leanlm.runtime.prompts import Prompt, PromptBatch, encode_prompts
from leanlm.runtime.sampling import SamplingConfig, next_tokens
from leanlm.runtime.streaming import RowText

logger = logging.getLogger(__name__)

TextCallback = Callable[[int, str], None]  # (batch row, new text)


@dataclass
class Generation:
    """Output of one `generate` call: tokens and text per row, timings, and the cache's size."""

    prompt_lengths: list[int]
    tokens: list[list[int]]  # new tokens per row, up to and including EOS or the stop string
    texts: list[str]  # decoded new text per row, cut before any stop string
    finish_reasons: list[str]  # "eos", "stop" or "length"
    prefill_seconds: float
    decode_seconds: float
    kv_bytes: int  # bytes the cache held when generation ended
    cache: Cache

    @property
    def generated_tokens(self) -> int:
        return sum(len(row) for row in self.tokens)

    @property
    def tokens_per_second(self) -> float:
        elapsed = self.prefill_seconds + self.decode_seconds
        return self.generated_tokens / elapsed if elapsed > 0 else 0.0


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    config: SamplingConfig | None = None,
    *,
    chat: bool = False,
    system: str | None = None,
    cache: Cache | CacheFactory | None = None,
    on_text: TextCallback | None = None,
) -> Generation:
    """Generate a continuation for each prompt (text or token ids) in one batch.

    `cache` is a transformers `Cache`, a factory `model -> Cache`, or None for the plain `DynamicCache`.
    `on_text(row, text)` receives each row's new text as soon as it is final.
    """
    config = config or SamplingConfig()
    batch = encode_prompts(tokenizer, prompts, chat=chat, system=system)
    check_context(model, batch.input_ids.shape[1], config.max_new_tokens)
    if cache is None:
        cache = dynamic_cache(model)
    elif not isinstance(cache, Cache):
        cache = cache(model)

    with torch.inference_mode():
        return _run(model, tokenizer, batch, config, cache, on_text)


def check_context(model: PreTrainedModel, prompt_tokens: int, new_tokens: int) -> None:
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and prompt_tokens + new_tokens > limit:
        raise ContextTooLongError(
            f"{prompt_tokens} prompt tokens + {new_tokens} new tokens exceed the model's context of {limit} "
            "tokens; shorten the prompt or lower the number of new tokens"
        )


def _run(model, tokenizer, batch: PromptBatch, config: SamplingConfig, cache: Cache, on_text) -> Generation:
    device = model.device
    eos_ids = _eos_ids(model, tokenizer) if config.stop_at_eos else set()
    generator = _generator(config, device)
    rows = [RowText(tokenizer, config.stop_strings) for _ in range(batch.input_ids.shape[0])]
    finish = ["length"] * len(rows)

    # transformers drops an all-ones mask so attention takes its faster causal path; do the same.
    # NOTE: the padding mask spans every token processed. A cache that evicts tokens must map it onto the
    # tokens it kept (through its attention hook); transformers' mask code alone would misalign it.
    mask = batch.attention_mask.to(device) if batch.has_padding else None
    positions = batch.position_ids().to(device)  # [B, T]
    unfinished = torch.ones(len(rows), dtype=torch.bool, device=device)  # [B]

    # prefill
    started = time.perf_counter()
    out = model(input_ids=batch.input_ids.to(device), attention_mask=mask, position_ids=positions,
                cache=cache, use_cache=True, logits_to_keep=1)
    prefill_seconds = time.perf_counter() - started
    positions = positions[:, -1:]  # [B, 1]

    # decode
    started = time.perf_counter()
    for step in range(config.max_new_tokens):
        token = next_tokens(out.logits[:, -1], config, generator)  # [B]
        token = token.masked_fill(~unfinished, tokenizer.pad_token_id or 0)
        newly_done = _record(rows, token.tolist(), unfinished.tolist(), eos_ids, finish, on_text)
        if newly_done:
            unfinished[newly_done] = False
        if not unfinished.any() or step == config.max_new_tokens - 1:
            break

        positions = positions + 1
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)  # [B, T + step + 1]
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
    decode_seconds = time.perf_counter() - started

    if on_text is not None:
        for b, row in enumerate(rows):
            if tail := row.flush():
                on_text(b, tail)
    return Generation(
        prompt_lengths=batch.lengths,
        tokens=[row.tokens for row in rows],
        texts=[row.text for row in rows],
        finish_reasons=finish,
        prefill_seconds=prefill_seconds,
        decode_seconds=decode_seconds,
        kv_bytes=kv_cache_bytes(cache),
        cache=cache,
    )


def _record(rows, tokens, unfinished, eos_ids, finish, on_text) -> list[int]:
    """Append each unfinished row's token; return the rows that finished with it."""
    done = []
    for b, (row, token, active) in enumerate(zip(rows, tokens, unfinished)):
        if not active:
            continue
        if token in eos_ids:
            row.tokens.append(token)
            finish[b] = "eos"
            done.append(b)
            continue
        delta = row.append(token)
        if delta and on_text is not None:
            on_text(b, delta)
        if row.stopped:
            finish[b] = "stop"
            done.append(b)
    return done


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Return the end-of-sequence ids transformers' generate would stop on."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    return {eos} if isinstance(eos, int) else set(eos or [])


def _generator(config: SamplingConfig, device: torch.device) -> torch.Generator | None:
    if config.greedy or config.seed is None:
        return None
    return torch.Generator(device=device).manual_seed(config.seed)
