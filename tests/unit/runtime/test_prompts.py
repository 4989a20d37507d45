"""Chat mode: prompts go through the tokenizer's chat template before tokenisation."""

from leanlm.runtime import SamplingConfig, apply_chat_template, encode_prompts, generate

# What the fixture's chat template renders, written out by hand.
USER_ONLY = "<s>[user] Where is the mill?\n[assistant] "
WITH_SYSTEM = "<s>[system] Answer in one line.\n[user] Where is the mill?\n[assistant] "


def ids_of(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_template_renders_user_turn(tokenizer):
    assert apply_chat_template(tokenizer, "Where is the mill?") == USER_ONLY


def test_template_renders_system_turn(tokenizer):
    assert apply_chat_template(tokenizer, "Where is the mill?", "Answer in one line.") == WITH_SYSTEM


def test_chat_ids_are_template_ids(tokenizer):
    batch = encode_prompts(tokenizer, ["Where is the mill?"], chat=True)

    assert batch.input_ids[0].tolist() == ids_of(tokenizer, USER_ONLY)


def test_chat_ids_have_one_bos(tokenizer):
    batch = encode_prompts(tokenizer, ["Where is the mill?"], chat=True)

    assert batch.input_ids[0].tolist().count(tokenizer.bos_token_id) == 1


def test_chat_ids_with_system(tokenizer):
    batch = encode_prompts(tokenizer, ["Where is the mill?"], chat=True, system="Answer in one line.")

    assert batch.input_ids[0].tolist() == ids_of(tokenizer, WITH_SYSTEM)


def test_plain_prompt_skips_template(tokenizer):
    batch = encode_prompts(tokenizer, ["Where is the mill?"])

    assert batch.input_ids[0].tolist() == tokenizer("Where is the mill?")["input_ids"]


def test_chat_generation_uses_template(model, tokenizer):
    config = SamplingConfig(max_new_tokens=8)

    chat = generate(model, tokenizer, ["Where is the mill?"], config, chat=True, system="Answer in one line.")
    from_ids = generate(model, tokenizer, [ids_of(tokenizer, WITH_SYSTEM)], config)

    assert chat.prompt_lengths == [len(ids_of(tokenizer, WITH_SYSTEM))]
    assert chat.tokens == from_ids.tokens
