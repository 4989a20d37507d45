"""Invalid prompts, options and context lengths raise leanlm errors that name the bad value."""

import math
import re

import pytest

from leanlm.errors import ContextTooLongError, InvalidArgumentError, LeanLMError
from leanlm.runtime import SamplingConfig, check_context, generate


@pytest.mark.parametrize(
    "prompts",
    [[""], ["   \n\t"], [], [[]], ["fine", ""]],
    ids=["empty-string", "whitespace", "no-prompts", "no-token-ids", "one-empty-of-two"],
)
def test_bad_prompts_rejected(model, tokenizer, prompts):
    with pytest.raises(InvalidArgumentError) as caught:
        generate(model, tokenizer, prompts, SamplingConfig(max_new_tokens=2))

    assert isinstance(caught.value, LeanLMError)


@pytest.mark.parametrize(
    ("options", "named_value"),
    [
        ({"max_new_tokens": 0}, "0"),
        ({"max_new_tokens": -3}, "-3"),
        ({"temperature": -0.5}, "-0.5"),
        ({"top_k": -1}, "-1"),
        ({"top_p": 0.0}, "0.0"),
        ({"top_p": 1.5}, "1.5"),
        ({"top_p": -0.2}, "-0.2"),
    ],
    ids=["tokens-zero", "tokens-negative", "temperature-negative", "top-k-negative", "top-p-zero",
         "top-p-above-one", "top-p-negative"],
)
def test_bad_option_named_in_error(options, named_value):
    with pytest.raises(InvalidArgumentError) as caught:
        SamplingConfig(**options)

    option = next(iter(options))
    assert isinstance(caught.value, LeanLMError)
    assert option in str(caught.value)
    assert named_value in str(caught.value)


def test_empty_stop_string_rejected():
    with pytest.raises(InvalidArgumentError, match="stop strings"):
        SamplingConfig(stop_strings=("ok", ""))


def test_nan_temperature_rejected():
    with pytest.raises(InvalidArgumentError):
        SamplingConfig(temperature=math.nan)


def test_context_too_long_rejected(model, tokenizer):
    limit = model.config.max_position_embeddings
    prompt = list(range(3, 3 + limit - 6))  # limit - 6 token ids, all ordinary tokens

    with pytest.raises(ContextTooLongError) as caught:
        generate(model, tokenizer, [prompt], SamplingConfig(max_new_tokens=7))

    message = str(caught.value)
    assert isinstance(caught.value, InvalidArgumentError)
    assert str(limit - 6) in message
    assert re.search(r"\b7\b", message)
    assert str(limit) in message


def test_context_counts_padded_width(model, tokenizer):
    limit = model.config.max_position_embeddings
    long_prompt = list(range(3, 3 + limit - 4))

    with pytest.raises(ContextTooLongError):
        generate(model, tokenizer, [[5, 6], long_prompt], SamplingConfig(max_new_tokens=5))


def test_context_exactly_full_allowed(model):
    limit = model.config.max_position_embeddings

    check_context(model, limit - 6, 6)


def test_context_one_over_rejected(model):
    limit = model.config.max_position_embeddings

    with pytest.raises(ContextTooLongError):
        check_context(model, limit - 6, 7)


def test_chat_without_template_rejected(model, plain_tokenizer):
    with pytest.raises(InvalidArgumentError, match="chat template"):
        generate(model, plain_tokenizer, ["hello"], SamplingConfig(max_new_tokens=2), chat=True)


def test_single_string_is_one_prompt(model, tokenizer):
    as_string = generate(model, tokenizer, "hello there", SamplingConfig(max_new_tokens=3))
    as_list = generate(model, tokenizer, ["hello there"], SamplingConfig(max_new_tokens=3))
    assert as_string.tokens == as_list.tokens


def test_flat_token_list_rejected(model, tokenizer):
    with pytest.raises(InvalidArgumentError, match="wrap one prompt's token ids"):
        generate(model, tokenizer, [5, 6, 7], SamplingConfig(max_new_tokens=3))


def test_greedy_with_sampling_options_warns(caplog):
    with caplog.at_level("WARNING", logger="leanlm.runtime.sampling"):
        SamplingConfig(top_k=5)
    assert "apply only when sampling" in caplog.text
