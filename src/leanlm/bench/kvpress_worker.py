"""Measure kvpress presses on one model and one set of token windows, inside kvpress's own environment.

kvpress 0.5.5 requires transformers < 5.3 while leanlm requires 5.25, so `leanlm.bench.kvpress_peer` runs this
script with the python of a separate virtual environment. It therefore imports only torch, transformers,
safetensors, kvpress and the standard library, never leanlm.

Usage: python kvpress_worker.py INPUT_DIR OUTPUT_PATH

INPUT_DIR contains `request.json` and `windows.safetensors` (tensor "windows", int64 [N, T]). OUTPUT_PATH
receives a JSON list with one result per (press, compression ratio), preceded by one run without a press.
The metrics follow leanlm's definitions: see `leanlm.eval.continuation_perplexity`.

Shapes: B batch (always 1 here), T tokens, V vocabulary, Hkv KV heads, D head dim.
"""

import argparse
import contextlib
import json
import logging
import math
import sys
import time
from importlib.metadata import version
from pathlib import Path

import kvpress
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

logger = logging.getLogger("kvpress_worker")

ANSWER_TOKENS = 8  # greedy tokens decoded after a passkey prompt, as in leanlm's passkey evaluation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run kvpress presses for leanlm's KV-cache benchmark.")
    parser.add_argument("input_dir", type=Path, help="directory with request.json and windows.safetensors")
    parser.add_argument("output", type=Path, help="path of the JSON result list to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    transformers.logging.disable_progress_bar()

    request = json.loads((args.input_dir / "request.json").read_text())
    windows = load_file(str(args.input_dir / "windows.safetensors"))["windows"]  # [N, T]
    logger.info(
        "kvpress %s, transformers %s, torch %s: %d windows of %d tokens, context %d",
        version("kvpress"),
        transformers.__version__,
        torch.__version__,
        windows.shape[0],
        windows.shape[1],
        request["context"],
    )

    model = AutoModelForCausalLM.from_pretrained(request["model_dir"], dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(request["model_dir"])
    results = [measure(model, tokenizer, windows, request, None, 0.0)]
    for press in request["presses"]:
        for ratio in request["ratios"]:
            results.append(measure(model, tokenizer, windows, request, press, ratio))

    partial = args.output.with_name(args.output.name + ".partial")
    partial.write_text(json.dumps(results, indent=2))
    partial.replace(args.output)
    return 0


def measure(model, tokenizer, windows: torch.Tensor, request: dict, press: dict | None, ratio: float) -> dict:
    """Run every requested measurement for one press at one compression ratio (no press when `press` is None)."""
    method = f"kvpress-{press['name'] if press else 'none'}"
    started = time.perf_counter()
    model.set_attn_implementation("eager" if press and press["needs_eager"] else "sdpa")
    kv_press = getattr(kvpress, press["class"])(compression_ratio=ratio) if press else None

    with torch.inference_mode():
        result = {"method": method, "compression_ratio": ratio}
        result |= continuation_perplexity(model, windows, request["context"], kv_press)
        if request.get("passkey"):
            result["passkey_acc"] = passkey_accuracy(model, tokenizer, request["passkey"], kv_press)
        if request.get("decode_contexts"):
            result["decode_tokens_per_s"] = {
                str(context): decode_speed(model, windows, context, request["decode_tokens"], kv_press)
                for context in request["decode_contexts"]
            }
    logger.info("%s ratio %.2f: ppl %.4f, kv_bytes %d (%.1f s)", method, ratio, result["ppl"],
                result["kv_bytes"], time.perf_counter() - started)
    return result


def prefill(model, input_ids: torch.Tensor, kv_press) -> tuple[torch.Tensor, DynamicCache]:
    """Prefill `input_ids` [1, T] with the press active; return the last logits [1, V] and the new cache."""
    cache = DynamicCache(config=model.config)
    positions = torch.arange(input_ids.shape[1]).unsqueeze(0)  # [1, T]
    with kv_press(model) if kv_press is not None else contextlib.nullcontext():
        out = model(input_ids=input_ids, position_ids=positions, past_key_values=cache, use_cache=True,
                    logits_to_keep=1)
    return out.logits[:, -1], cache


def continuation_perplexity(model, windows: torch.Tensor, context: int, kv_press) -> dict:
    """Score tokens `context`..T-1 of each window after prefilling its first `context` tokens with the press.

    The prefill's last logits score token `context`. The rest are scored in one forward pass over the
    compressed cache, outside the press, at their true positions (not at the compressed cache's length).
    """
    total_nll, total_tokens, total_bytes = 0.0, 0, 0
    for window in windows:
        tokens = window.unsqueeze(0)  # [1, T]
        logits, cache = prefill(model, tokens[:, :context], kv_press)
        total_nll += F.cross_entropy(logits.float(), tokens[:, context], reduction="sum").item()
        total_bytes += cache_bytes(cache)

        if tokens.shape[1] - context > 1:
            positions = torch.arange(context, tokens.shape[1] - 1).unsqueeze(0)  # [1, T - context - 1]
            out = model(input_ids=tokens[:, context:-1], position_ids=positions, past_key_values=cache,
                        use_cache=True)
            total_nll += F.cross_entropy(out.logits[0].float(), tokens[0, context + 1 :], reduction="sum").item()
        total_tokens += tokens.shape[1] - context

    nll = total_nll / total_tokens
    return {
        "ppl": math.exp(nll),
        "nll": nll,
        "tokens": total_tokens,
        "windows": windows.shape[0],
        "kv_bytes": round(total_bytes / windows.shape[0]),
    }


def cache_bytes(cache: DynamicCache) -> int:
    """Count the storage bytes of every layer's key and value tensors [B, Hkv, T, D], each storage once."""
    seen, total = set(), 0
    for layer in cache.layers:
        for tensor in (layer.keys, layer.values):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
    return total


def decode_greedy(model, cache: DynamicCache, token: int, position: int, steps: int, stop: set[int]) -> list[int]:
    """Feed `token` at `position`, then each argmax token, for at most `steps` forward passes without a press.

    Returns the tokens produced; decoding ends early after a token in `stop`.
    """
    produced = []
    for step in range(steps):
        input_ids = torch.tensor([[token]])  # [1, 1]
        positions = torch.tensor([[position + step]])  # [1, 1]
        out = model(input_ids=input_ids, position_ids=positions, past_key_values=cache, use_cache=True)
        token = out.logits[0, -1].argmax().item()
        produced.append(token)
        if token in stop:
            break
    return produced


def stop_tokens(model) -> set[int]:
    eos = model.generation_config.eos_token_id
    if eos is None:
        return set()
    return {eos} if isinstance(eos, int) else set(eos)


def passkey_accuracy(model, tokenizer, prompts: list[dict], kv_press) -> float:
    """Decode up to 8 greedy tokens after each prompt; return the fraction of answers containing the prompt's key."""
    stop = stop_tokens(model)
    correct = 0
    for prompt in prompts:
        tokens = torch.tensor([prompt["tokens"]])  # [1, T]
        logits, cache = prefill(model, tokens, kv_press)
        first = logits[0].argmax().item()
        answer = [first]
        if first not in stop:
            answer += decode_greedy(model, cache, first, tokens.shape[1], ANSWER_TOKENS - 1, stop)
        text = tokenizer.decode(answer, skip_special_tokens=True)
        correct += prompt["key"] in text
    return correct / len(prompts)


def decode_speed(model, windows: torch.Tensor, context: int, steps: int, kv_press) -> float:
    """Time `steps` greedy decode steps after prefilling `context` tokens with the press, and return tokens/s.

    The prompt repeats the windows' tokens until it is `context` tokens long, and the prefill is not timed.
    Decoding does not stop at EOS, so every run times exactly `steps` forward passes.
    NOTE: this is one timed run per context, so a busy machine lowers the figure directly.
    """
    flat = windows.flatten()
    prompt = flat.repeat(math.ceil(context / flat.numel()))[:context].unsqueeze(0)  # [1, context]
    logits, cache = prefill(model, prompt, kv_press)
    first = logits[0].argmax().item()
    started = time.perf_counter()
    decode_greedy(model, cache, first, context, steps, stop=set())
    return steps / (time.perf_counter() - started)


if __name__ == "__main__":
    sys.exit(main())
