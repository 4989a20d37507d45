"""Seeded sampling and its degenerate settings (top_k 1, tiny top_p) that must reduce to greedy decoding."""

import torch

from leanlm.runtime import SamplingConfig, generate
from leanlm.runtime.sampling import next_tokens

# The fixture model's next-token distribution is close to uniform over its 400 tokens (the top token had
# 0.4 % on a checked step), so two seeds draw the same 24 tokens with negligible probability.
NEW_TOKENS = 24
PROMPTS = ["The river bends", "Children walk to school along the canal"]


def sampled(seed: int, **options) -> SamplingConfig:
    return SamplingConfig(max_new_tokens=NEW_TOKENS, temperature=1.0, seed=seed, **options)


def test_same_seed_same_tokens(model, tokenizer):
    first = generate(model, tokenizer, PROMPTS, sampled(seed=7))
    second = generate(model, tokenizer, PROMPTS, sampled(seed=7))

    assert first.tokens == second.tokens


def test_different_seeds_differ(model, tokenizer):
    first = generate(model, tokenizer, PROMPTS, sampled(seed=7))
    second = generate(model, tokenizer, PROMPTS, sampled(seed=8))

    assert first.tokens[0] != second.tokens[0]
    assert first.tokens[1] != second.tokens[1]


def test_sampling_differs_from_greedy(model, tokenizer):
    greedy = generate(model, tokenizer, PROMPTS, SamplingConfig(max_new_tokens=NEW_TOKENS))
    drawn = generate(model, tokenizer, PROMPTS, sampled(seed=7))

    assert drawn.tokens != greedy.tokens


def test_top_k_one_is_greedy(model, tokenizer):
    greedy = generate(model, tokenizer, PROMPTS, SamplingConfig(max_new_tokens=NEW_TOKENS))
    drawn = generate(model, tokenizer, PROMPTS, sampled(seed=7, top_k=1))

    assert drawn.tokens == greedy.tokens


def test_tiny_top_p_is_greedy(model, tokenizer):
    greedy = generate(model, tokenizer, PROMPTS, SamplingConfig(max_new_tokens=NEW_TOKENS))
    drawn = generate(model, tokenizer, PROMPTS, sampled(seed=7, top_p=1e-6))

    assert drawn.tokens == greedy.tokens


def test_top_k_keeps_only_k_best():
    logits = torch.tensor([[0.0, 5.0, 1.0, 4.0, 2.0]])  # [B=1, V=5]
    config = SamplingConfig(temperature=1.0, top_k=2)
    generator = torch.Generator().manual_seed(0)

    drawn = {next_tokens(logits, config, generator).item() for _ in range(200)}

    assert drawn == {1, 3}


def test_top_p_keeps_smallest_set():
    # Probabilities 0.5, 0.3, 0.15, 0.05: top_p 0.7 needs the first two tokens to reach the mass.
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    config = SamplingConfig(temperature=1.0, top_p=0.7)
    generator = torch.Generator().manual_seed(0)

    drawn = {next_tokens(logits, config, generator).item() for _ in range(200)}

    assert drawn == {0, 1}


def test_greedy_picks_argmax_per_row():
    logits = torch.tensor([[0.1, 0.9, 0.3], [2.0, -1.0, 0.5]])

    chosen = next_tokens(logits, SamplingConfig(), None)

    assert chosen.tolist() == [1, 0]
