"""`LocalBackend` on a tiny random-weight Llama: token counts, grouping by settings, order, template errors."""

import pytest

from leanlm.errors import InvalidArgumentError
from leanlm.models.loader import LoadedModel
from leanlm.runtime import SamplingConfig, generate
from leanlm.runtime.backends import ChatRequest, LocalBackend
from tests.unit.runtime.conftest import build_tokenizer

CONVERSATIONS = [
    [{"role": "user", "content": "The river bends"}],
    [
        {"role": "system", "content": "Answer in one line."},
        {"role": "user", "content": "When does the baker light the oven?"},
    ],
    [
        {"role": "user", "content": "Count the boats"},
        {"role": "assistant", "content": "There are 42"},
        {"role": "user", "content": "And the bridges?"},
    ],
]


def template_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Encode messages the way a chat server does: the template's text, tokenised without extra specials."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_token_counts_match_generate(tiny_chat_model: LoadedModel) -> None:
    tokenizer = tiny_chat_model.tokenizer
    requests = [ChatRequest(messages, max_new_tokens=6) for messages in CONVERSATIONS]
    prompts = [template_ids(tokenizer, messages) for messages in CONVERSATIONS]
    expected = generate(tiny_chat_model.model, tokenizer, prompts, SamplingConfig(max_new_tokens=6))

    replies = LocalBackend(tiny_chat_model, batch_size=4).chat(requests)

    assert [reply.input_tokens for reply in replies] == [len(prompt) for prompt in prompts]
    assert [reply.input_tokens for reply in replies] == expected.prompt_lengths
    assert [reply.output_tokens for reply in replies] == [len(tokens) for tokens in expected.tokens]
    assert [reply.text for reply in replies] == expected.texts
    assert all(0 < reply.output_tokens <= 6 for reply in replies)


def test_finish_reasons_use_openai_words(tiny_chat_model: LoadedModel) -> None:
    requests = [ChatRequest(messages, max_new_tokens=4) for messages in CONVERSATIONS]

    replies = LocalBackend(tiny_chat_model).chat(requests)

    for reply in replies:
        assert reply.finish_reason in ("stop", "length")
        assert (reply.finish_reason == "length") == (reply.output_tokens == 4)


def test_mixed_settings_grouped_in_order(tiny_chat_model: LoadedModel) -> None:
    # Requests 0 and 2 share settings, as do 1 and 3. With batch_size 1, every group splits into single rows.
    tokenizer = tiny_chat_model.tokenizer
    messages = CONVERSATIONS + [[{"role": "user", "content": "Trains leave the station"}]]
    limits = [3, 5, 3, 5]
    requests = [ChatRequest(conversation, max_new_tokens=limit) for conversation, limit in zip(messages, limits)]

    grouped = LocalBackend(tiny_chat_model, batch_size=2).chat(requests)
    single = LocalBackend(tiny_chat_model, batch_size=1).chat(requests)

    for index in (0, 2), (1, 3):
        prompts = [template_ids(tokenizer, messages[i]) for i in index]
        expected = generate(tiny_chat_model.model, tokenizer, prompts, SamplingConfig(max_new_tokens=limits[index[0]]))
        assert [grouped[i].text for i in index] == expected.texts
        assert [grouped[i].output_tokens for i in index] == [len(tokens) for tokens in expected.tokens]
    for reply, limit in zip(grouped, limits):
        assert reply.output_tokens <= limit
    assert [reply.input_tokens for reply in single] == [reply.input_tokens for reply in grouped]


def test_sampled_requests_repeat_with_seed(tiny_chat_model: LoadedModel) -> None:
    requests = [ChatRequest(messages, max_new_tokens=5, temperature=1.0) for messages in CONVERSATIONS]

    first = LocalBackend(tiny_chat_model, seed=7).chat(requests)
    second = LocalBackend(tiny_chat_model, seed=7).chat(requests)

    assert [reply.text for reply in first] == [reply.text for reply in second]


def test_tokenizer_without_template_rejected(tiny_chat_model: LoadedModel) -> None:
    plain = LoadedModel(model=tiny_chat_model.model, tokenizer=build_tokenizer(None), name="plain", fingerprint="x")

    with pytest.raises(InvalidArgumentError, match="no chat template"):
        LocalBackend(plain)


def test_template_error_names_request(tiny_chat_model: LoadedModel) -> None:
    strict_template = (
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('the first message must be from the user') }}"
        "{% endif %}{% for message in messages %}{{ message['content'] }}\n{% endfor %}"
    )
    strict = LoadedModel(
        model=tiny_chat_model.model, tokenizer=build_tokenizer(strict_template), name="strict", fingerprint="x"
    )
    requests = [ChatRequest(CONVERSATIONS[0]), ChatRequest(CONVERSATIONS[1])]

    with pytest.raises(InvalidArgumentError, match="rejected request 1: the first message must be from the user"):
        LocalBackend(strict).chat(requests)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5])
def test_invalid_batch_size_rejected(tiny_chat_model: LoadedModel, batch_size) -> None:
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        LocalBackend(tiny_chat_model, batch_size=batch_size)


def test_single_request_not_list_rejected(tiny_chat_model: LoadedModel) -> None:
    with pytest.raises(InvalidArgumentError, match="wrap a single request in a list"):
        LocalBackend(tiny_chat_model).chat(ChatRequest(CONVERSATIONS[0]))
