"""Tests of the passkey evaluation: prompt construction, config checks, scoring and the end-to-end run."""

import json
import re

import pytest
from transformers import DynamicCache, LlamaForCausalLM, PreTrainedTokenizerFast

from leanlm.data import prose_tokens
from leanlm.errors import ContextTooLongError, InvalidArgumentError
from leanlm.eval import PasskeyConfig, PasskeyResult, passkey, passkey_accuracy
from leanlm.eval.passkey import INSTRUCTION, NEEDLE, QUESTION, PasskeyCell, build_prompts
from leanlm.runtime.generate import Generation

# The prompt overhead (instruction, needle and question) is about 80 tokens with the test tokenizer,
# so this length leaves about 45 tokens of prose.
LENGTH = 128


def encode(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def evaluation_haystack(tokenizer: PreTrainedTokenizerFast) -> list[int]:
    return [int(t) for document in prose_tokens(tokenizer, "evaluation") for t in document.tolist()]


def contains_run(sequence: list[int], run: list[int]) -> bool:
    width = len(run)
    return any(sequence[i : i + width] == run for i in range(len(sequence) - width + 1))


def minimum_length_from(message: str) -> int:
    match = re.search(r"use at least (\d+) tokens", message)
    assert match is not None, message
    return int(match.group(1))


def test_prompts_have_exact_length(tokenizer) -> None:
    config = PasskeyConfig(lengths=(LENGTH, 192), depths=(0.0, 0.5, 1.0), trials=2)

    prompts = build_prompts(tokenizer, config)

    assert len(prompts) == 2 * 3 * 2
    for prompt in prompts:
        assert len(prompt.tokens) == prompt.length
    assert sorted({(p.length, p.depth) for p in prompts}) == [
        (length, depth) for length in (LENGTH, 192) for depth in (0.0, 0.5, 1.0)
    ]


def test_prompt_text_contains_key(tokenizer) -> None:
    prompts = build_prompts(tokenizer, PasskeyConfig(lengths=(LENGTH,), depths=(0.5,), trials=3))

    for prompt in prompts:
        assert re.fullmatch(r"\d{5}", prompt.key)
        text = tokenizer.decode(prompt.tokens)
        assert text.startswith(INSTRUCTION)
        assert text.endswith(QUESTION)
        assert NEEDLE.format(key=prompt.key) in text


@pytest.mark.parametrize("depth", [0.0, 0.5, 1.0])
def test_needle_position_follows_depth(tokenizer, depth: float) -> None:
    instruction = encode(tokenizer, INSTRUCTION)
    question = encode(tokenizer, QUESTION)

    for prompt in build_prompts(tokenizer, PasskeyConfig(lengths=(LENGTH,), depths=(depth,), trials=2)):
        needle = encode(tokenizer, NEEDLE.format(key=prompt.key))
        filler = LENGTH - len(instruction) - len(needle) - len(question)
        start = len(instruction) + round(depth * filler)

        assert prompt.tokens[: len(instruction)] == instruction
        assert prompt.tokens[start : start + len(needle)] == needle
        assert prompt.tokens[-len(question) :] == question


def test_needle_at_depth_extremes(tokenizer) -> None:
    instruction = encode(tokenizer, INSTRUCTION)
    question = encode(tokenizer, QUESTION)
    config = PasskeyConfig(lengths=(LENGTH,), depths=(0.0, 1.0), trials=1)

    first, last = build_prompts(tokenizer, config)

    first_needle = encode(tokenizer, NEEDLE.format(key=first.key))
    last_needle = encode(tokenizer, NEEDLE.format(key=last.key))
    after_instruction = first.tokens[len(instruction) : len(instruction) + len(first_needle)]
    before_question = last.tokens[-len(question) - len(last_needle) : -len(question)]
    assert after_instruction == first_needle
    assert before_question == last_needle


def test_filler_is_evaluation_prose(tokenizer) -> None:
    haystack = evaluation_haystack(tokenizer)
    instruction = encode(tokenizer, INSTRUCTION)
    question = encode(tokenizer, QUESTION)

    for prompt in build_prompts(tokenizer, PasskeyConfig(lengths=(LENGTH,), depths=(0.5,), trials=2)):
        needle = encode(tokenizer, NEEDLE.format(key=prompt.key))
        body = prompt.tokens[len(instruction) : -len(question)]
        start = next(i for i in range(len(body)) if body[i : i + len(needle)] == needle)
        prose = body[:start] + body[start + len(needle) :]

        assert len(prose) == LENGTH - len(instruction) - len(needle) - len(question)
        assert contains_run(haystack, prose)


def test_keys_distinct_across_trials(tokenizer) -> None:
    prompts = build_prompts(tokenizer, PasskeyConfig(lengths=(LENGTH,), depths=(0.0, 1.0), trials=5))
    keys = [prompt.key for prompt in prompts]

    assert len(set(keys)) == len(keys)


def test_prompts_deterministic_for_seed(tokenizer) -> None:
    config = PasskeyConfig(lengths=(LENGTH,), depths=(0.25, 0.75), trials=3, seed=7)

    first = build_prompts(tokenizer, config)
    second = build_prompts(tokenizer, config)

    assert [p.key for p in first] == [p.key for p in second]
    assert [p.tokens for p in first] == [p.tokens for p in second]


def test_prompts_differ_across_seeds(tokenizer) -> None:
    first = build_prompts(tokenizer, PasskeyConfig(lengths=(LENGTH,), depths=(0.5,), trials=3, seed=1))
    second = build_prompts(tokenizer, PasskeyConfig(lengths=(LENGTH,), depths=(0.5,), trials=3, seed=2))

    assert [p.key for p in first] != [p.key for p in second]


def test_too_short_length_raises(tokenizer) -> None:
    short = 10

    with pytest.raises(InvalidArgumentError) as caught:
        build_prompts(tokenizer, PasskeyConfig(lengths=(short,), depths=(0.5,), trials=1))

    message = str(caught.value)
    assert f"passkey length {short}" in message
    minimum = minimum_length_from(message)
    assert minimum > short

    # The same seed draws the same first key, so the reported minimum fits exactly, with no prose.
    prompts = build_prompts(tokenizer, PasskeyConfig(lengths=(minimum,), depths=(0.5,), trials=1))
    assert len(prompts[0].tokens) == minimum
    with pytest.raises(InvalidArgumentError):
        build_prompts(tokenizer, PasskeyConfig(lengths=(minimum - 1,), depths=(0.5,), trials=1))


def test_too_long_length_raises(tokenizer) -> None:
    available = len(evaluation_haystack(tokenizer))
    length = available + 10_000

    with pytest.raises(InvalidArgumentError) as caught:
        build_prompts(tokenizer, PasskeyConfig(lengths=(length,), depths=(0.5,), trials=1))

    message = str(caught.value)
    assert f"passkey length {length}" in message
    assert f"has {available}" in message
    assert "shorter lengths" in message


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"lengths": ()}, "lengths"),
        ({"lengths": (128, 0)}, "lengths"),
        ({"lengths": (-64,)}, "lengths"),
        ({"depths": ()}, "depths"),
        ({"depths": (-0.1,)}, "depths"),
        ({"depths": (0.5, 1.5)}, "depths"),
        ({"depths": (float("nan"),)}, "depths"),
        ({"trials": 0}, "trials"),
        ({"trials": -2}, "trials"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -1}, "batch_size"),
    ],
)
def test_config_rejects_invalid(options: dict, field: str) -> None:
    with pytest.raises(InvalidArgumentError, match=field):
        PasskeyConfig(**options)


def test_config_accepts_depth_bounds() -> None:
    config = PasskeyConfig(lengths=(64,), depths=(0.0, 1.0), trials=1, batch_size=1)

    assert config.depths == (0.0, 1.0)


def test_cell_and_result_accuracy() -> None:
    result = PasskeyResult(
        cells=[
            PasskeyCell(length=64, depth=0.0, correct=1, total=2),
            PasskeyCell(length=64, depth=1.0, correct=2, total=2),
            PasskeyCell(length=128, depth=0.5, correct=0, total=4),
        ]
    )

    assert result.cells[0].accuracy == 0.5
    assert result.accuracy == pytest.approx(3 / 8)
    assert result.accuracy_at(64) == pytest.approx(3 / 4)
    assert result.accuracy_at(128) == 0.0


def test_result_to_dict_structure() -> None:
    result = PasskeyResult(
        cells=[
            PasskeyCell(length=128, depth=0.5, correct=3, total=4),
            PasskeyCell(length=64, depth=0.0, correct=1, total=4),
        ]
    )

    data = result.to_dict()

    assert set(data) == {"accuracy", "by_length", "cells"}
    assert data["accuracy"] == pytest.approx(0.5)
    assert list(data["by_length"]) == ["64", "128"]
    assert data["by_length"] == {"64": 0.25, "128": 0.75}
    assert data["cells"] == [
        {"length": 128, "depth": 0.5, "correct": 3, "total": 4, "accuracy": 0.75},
        {"length": 64, "depth": 0.0, "correct": 1, "total": 4, "accuracy": 0.25},
    ]
    assert json.loads(json.dumps(data)) == data


def test_accuracy_end_to_end(model: LlamaForCausalLM, tokenizer) -> None:
    config = PasskeyConfig(lengths=(LENGTH,), depths=(0.5,), trials=2, batch_size=2)
    finished: list[int] = []

    result = passkey_accuracy(model, tokenizer, config, progress=finished.append)

    assert len(result.cells) == 1
    cell = result.cells[0]
    assert (cell.length, cell.depth) == (LENGTH, 0.5)
    assert cell.total == 2
    assert 0 <= cell.correct <= cell.total
    assert finished == [2]
    assert 0.0 <= result.to_dict()["accuracy"] <= 1.0


def test_accuracy_cells_add_up(model: LlamaForCausalLM, tokenizer) -> None:
    config = PasskeyConfig(lengths=(LENGTH, 160), depths=(0.0, 1.0), trials=2, batch_size=3)
    finished: list[int] = []

    result = passkey_accuracy(model, tokenizer, config, progress=finished.append)

    assert sorted((c.length, c.depth) for c in result.cells) == [(LENGTH, 0.0), (LENGTH, 1.0), (160, 0.0), (160, 1.0)]
    assert all(c.total == 2 for c in result.cells)
    assert sum(c.total for c in result.cells) == 8
    assert finished == [3, 3, 2]


def test_accuracy_new_cache_per_batch(model: LlamaForCausalLM, tokenizer) -> None:
    calls: list[int] = []

    def factory(current: LlamaForCausalLM) -> DynamicCache:
        calls.append(1)
        return DynamicCache(config=current.config)

    config = PasskeyConfig(lengths=(LENGTH,), depths=(0.5,), trials=3, batch_size=2)
    passkey_accuracy(model, tokenizer, config, cache=factory)

    assert len(calls) == 2


def test_accuracy_counts_key_in_answer(
    model: LlamaForCausalLM, tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in generator returns the right key for depth 0 prompts and a wrong number for depth 1.
    def fake_generate(model, tokenizer, prompts, sampling, *, cache):
        texts = []
        for tokens in prompts:
            text = tokenizer.decode(tokens)
            key = re.search(r"pass key is (\d{5})", text).group(1)
            at_start = text.startswith(INSTRUCTION + NEEDLE.format(key=key))
            texts.append(f" {key}." if at_start else " 00000.")
        return Generation(
            prompt_lengths=[len(p) for p in prompts],
            tokens=[[] for _ in prompts],
            texts=texts,
            finish_reasons=["length"] * len(prompts),
            prefill_seconds=0.0,
            decode_seconds=0.0,
            kv_bytes=0,
            cache=DynamicCache(),
        )

    monkeypatch.setattr(passkey, "generate", fake_generate)
    config = PasskeyConfig(lengths=(LENGTH,), depths=(0.0, 1.0), trials=3, batch_size=2)

    result = passkey_accuracy(model, tokenizer, config)

    by_depth = {cell.depth: cell for cell in result.cells}
    assert (by_depth[0.0].correct, by_depth[0.0].total) == (3, 3)
    assert (by_depth[1.0].correct, by_depth[1.0].total) == (0, 3)
    assert result.accuracy == pytest.approx(0.5)


def test_accuracy_rejects_too_long_prompts(model: LlamaForCausalLM, tokenizer) -> None:
    length = model.config.max_position_embeddings
    config = PasskeyConfig(lengths=(length,), depths=(0.5,), trials=1)

    with pytest.raises(ContextTooLongError) as caught:
        passkey_accuracy(model, tokenizer, config)

    assert str(length) in str(caught.value)
