"""Generation, perplexity and passkey on the real default model (SmolLM2-135M-Instruct)."""

import pytest
import torch

from leanlm.data import token_windows
from leanlm.eval import PasskeyConfig, continuation_perplexity, passkey_accuracy, perplexity
from leanlm.runtime import SamplingConfig, generate

pytestmark = pytest.mark.integration

# fp32 dequantised SmolLM2-135M-Instruct on the Gutenberg story, 1024-token windows: 27.5 measured on all
# eight windows of the story and 29.1 on its first four (leanlm eval ppl, CPU).
GUTENBERG_PPL_RANGE = (25.0, 35.0)
GUTENBERG_WINDOWS = 4  # the story comes first in the evaluation split and fills 8 windows of 1024


def test_default_model_shape(default_model):
    config = default_model.model.config
    assert config.num_hidden_layers == 30
    assert config.num_attention_heads == 9
    assert config.num_key_value_heads == 3
    assert config.hidden_size == 576


def test_greedy_matches_transformers_padded_chat(default_model):
    model, tokenizer = default_model.model, default_model.tokenizer
    prompts = ["What is the capital of France?", "Write one sentence about the sea and the wind at night."]
    ours = generate(model, tokenizer, prompts, SamplingConfig(max_new_tokens=24), chat=True)

    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in prompts]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        reference = model.generate(**batch, max_new_tokens=24, do_sample=False)

    for row, tokens in enumerate(ours.tokens):
        expected = reference[row, batch["input_ids"].shape[1] :].tolist()[: len(tokens)]
        assert tokens == expected, f"row {row} differs from transformers"


def test_greedy_matches_transformers_prose(default_model):
    model, tokenizer = default_model.model, default_model.tokenizer
    prompts = token_windows(tokenizer, "evaluation", 256, max_windows=2)
    ours = generate(model, tokenizer, prompts.tolist(), SamplingConfig(max_new_tokens=16))
    with torch.inference_mode():
        reference = model.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=16,
                                   do_sample=False)
    assert ours.tokens == reference[:, 256:].tolist()


def test_perplexity_in_stated_range(default_model):
    windows = token_windows(default_model.tokenizer, "evaluation", 1024, max_windows=GUTENBERG_WINDOWS)
    result = perplexity(default_model.model, windows)
    low, high = GUTENBERG_PPL_RANGE
    assert low < result.ppl < high, f"perplexity {result.ppl:.2f} outside {GUTENBERG_PPL_RANGE}"


def test_continuation_full_cache_matches_forward(default_model):
    windows = token_windows(default_model.tokenizer, "evaluation", 384, max_windows=2)
    context = 256
    cached = continuation_perplexity(default_model.model, windows, context, batch_size=2)

    # the same scored tokens from one plain forward pass over each whole window
    with torch.inference_mode():
        logits = default_model.model(input_ids=windows, use_cache=False).logits  # [B, T, V]
    nll = torch.nn.functional.cross_entropy(
        logits[:, context - 1 : -1].flatten(0, 1), windows[:, context:].flatten()
    ).item()
    assert cached.nll == pytest.approx(nll, rel=1e-4)


def test_passkey_above_chance_short(default_model):
    config = PasskeyConfig(lengths=(256,), depths=(0.0, 0.5, 1.0), trials=2, batch_size=6)
    result = passkey_accuracy(default_model.model, default_model.tokenizer, config)
    # chance is about 1e-5 for a five-digit key; 0.83 was measured over 256 to 1024 tokens
    assert result.accuracy >= 0.5
