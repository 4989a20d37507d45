"""Greedy decoding, padding, EOS, KV cache size and caller-supplied caches of `leanlm.runtime.generate`."""

from transformers import DynamicCache

from leanlm.runtime import SamplingConfig, dynamic_cache, encode_prompts, generate, kv_cache_bytes

NEW_TOKENS = 16
PROMPTS = [
    "The river bends",
    "Every morning the baker lights the oven at five",
    "A",
]


def greedy(max_new_tokens: int = NEW_TOKENS) -> SamplingConfig:
    return SamplingConfig(max_new_tokens=max_new_tokens)


def padded_width(tokenizer, prompts: list[str]) -> int:
    return max(len(tokenizer(prompt)["input_ids"]) for prompt in prompts)


def expected_kv_bytes(model, batch_size: int, positions: int) -> int:
    """Bytes of an fp32 full cache: K and V of [batch, kv heads, positions, head dim] in every layer."""
    config = model.config
    head_dim = config.hidden_size // config.num_attention_heads
    per_layer = 2 * batch_size * config.num_key_value_heads * positions * head_dim * 4
    return config.num_hidden_layers * per_layer


def pick_eos_token(tokens: list[int], others: list[list[int]], tokenizer, first_step: int = 3) -> tuple[int, int]:
    """Find a step whose token is new in its row, absent from the other rows and not special.

    Returns (step, token), so that making that token the EOS ends this row exactly at that step.
    """
    special = set(tokenizer.all_special_ids)
    for step in range(first_step, len(tokens)):
        token = tokens[step]
        if token in special or token in tokens[:step]:
            continue
        if any(token in row for row in others):
            continue
        return step, token
    raise AssertionError(f"no usable EOS candidate in {tokens}")


# --- transformers equivalence ---------------------------------------------------------------------


def test_greedy_matches_transformers_batch_one(model, tokenizer, reference_tokens):
    result = generate(model, tokenizer, PROMPTS[:1], greedy())

    assert result.tokens == reference_tokens(PROMPTS[:1], NEW_TOKENS)


def test_greedy_matches_transformers_left_padded(model, tokenizer, reference_tokens):
    result = generate(model, tokenizer, PROMPTS, greedy())
    expected = reference_tokens(PROMPTS, NEW_TOKENS)

    for row in range(len(PROMPTS)):
        assert result.tokens[row] == expected[row], f"row {row}"


def test_greedy_matches_transformers_token_ids(model, tokenizer, reference_tokens):
    prompts = [[1, 40, 41, 42, 43, 44, 45], [1, 120, 7], [300]]

    result = generate(model, tokenizer, prompts, greedy())
    expected = reference_tokens(prompts, NEW_TOKENS)

    for row in range(len(prompts)):
        assert result.tokens[row] == expected[row], f"row {row}"


def test_token_ids_equal_text_prompt(model, tokenizer):
    text = PROMPTS[1]
    ids = tokenizer(text)["input_ids"]

    from_text = generate(model, tokenizer, [text], greedy())
    from_ids = generate(model, tokenizer, [ids], greedy())

    assert from_ids.tokens == from_text.tokens
    assert from_ids.prompt_lengths == [len(ids)]


def test_result_fields_per_row(model, tokenizer):
    result = generate(model, tokenizer, PROMPTS, greedy())
    lengths = [len(tokenizer(prompt)["input_ids"]) for prompt in PROMPTS]

    assert result.prompt_lengths == lengths
    assert result.finish_reasons == ["length"] * len(PROMPTS)
    assert [len(row) for row in result.tokens] == [NEW_TOKENS] * len(PROMPTS)
    assert result.generated_tokens == NEW_TOKENS * len(PROMPTS)
    assert result.texts[0] == tokenizer.decode(result.tokens[0], skip_special_tokens=True)


# --- padding and positions ------------------------------------------------------------------------


def test_padded_row_matches_alone(model, tokenizer):
    short, long = "The library opens", "Trains leave the station every quarter hour, heading north"

    alone = generate(model, tokenizer, [short], greedy())
    padded = generate(model, tokenizer, [long, short], greedy())

    assert padded.prompt_lengths[1] < padded.prompt_lengths[0]
    assert padded.tokens[1] == alone.tokens[0]


def test_padded_row_matches_alone_absolute(absolute_position_model, tokenizer):
    short, long = "The library opens", "Trains leave the station every quarter hour, heading north"

    alone = generate(absolute_position_model, tokenizer, [short], greedy())
    padded = generate(absolute_position_model, tokenizer, [long, short], greedy())

    assert padded.tokens[1] == alone.tokens[0]


def test_greedy_matches_transformers_absolute(absolute_position_model, tokenizer, reference_tokens):
    result = generate(absolute_position_model, tokenizer, PROMPTS, greedy())
    expected = reference_tokens(PROMPTS, NEW_TOKENS, absolute_position_model)

    for row in range(len(PROMPTS)):
        assert result.tokens[row] == expected[row], f"row {row}"


def test_prompt_batch_positions_skip_padding(tokenizer):
    batch = encode_prompts(tokenizer, [[5, 6, 7, 8], [9, 10]])

    assert batch.input_ids[1].tolist() == [tokenizer.pad_token_id] * 2 + [9, 10]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]
    assert batch.position_ids().tolist() == [[0, 1, 2, 3], [0, 0, 0, 1]]
    assert batch.has_padding


# --- EOS ------------------------------------------------------------------------------------------


def test_eos_ends_row_others_continue(model, tokenizer, reference_tokens, monkeypatch):
    prompts = PROMPTS[:2]
    free = generate(model, tokenizer, prompts, greedy())
    step, eos = pick_eos_token(free.tokens[0], free.tokens[1:], tokenizer)
    monkeypatch.setattr(model.generation_config, "eos_token_id", eos)

    result = generate(model, tokenizer, prompts, greedy())

    assert result.finish_reasons == ["eos", "length"]
    assert result.tokens[0][-1] == eos
    assert result.tokens[0] == free.tokens[0][: step + 1]
    assert result.texts[0] == tokenizer.decode(free.tokens[0][:step], skip_special_tokens=True)
    assert result.tokens[1] == free.tokens[1]
    assert result.tokens == reference_tokens(prompts, NEW_TOKENS)


def test_eos_list_any_id_ends_row(model, tokenizer, monkeypatch):
    free = generate(model, tokenizer, PROMPTS[:1], greedy())
    step, eos = pick_eos_token(free.tokens[0], [], tokenizer)
    monkeypatch.setattr(model.generation_config, "eos_token_id", [tokenizer.eos_token_id, eos])

    result = generate(model, tokenizer, PROMPTS[:1], greedy())

    assert result.finish_reasons == ["eos"]
    assert result.tokens[0] == free.tokens[0][: step + 1]


def test_eos_in_every_row_stops_loop(model, tokenizer, monkeypatch):
    free = generate(model, tokenizer, PROMPTS[:1], greedy())
    step, eos = pick_eos_token(free.tokens[0], [], tokenizer)
    monkeypatch.setattr(model.generation_config, "eos_token_id", eos)

    result = generate(model, tokenizer, PROMPTS[:1], greedy())
    prompt_length = result.prompt_lengths[0]

    assert result.finish_reasons == ["eos"]
    assert len(result.tokens[0]) == step + 1
    # The loop feeds every sampled token except the EOS back through the model.
    assert result.cache.get_seq_length() == prompt_length + step


def test_stop_at_eos_off_ignores_eos(model, tokenizer, monkeypatch):
    free = generate(model, tokenizer, PROMPTS[:1], greedy())
    _, eos = pick_eos_token(free.tokens[0], [], tokenizer)
    monkeypatch.setattr(model.generation_config, "eos_token_id", eos)

    config = SamplingConfig(max_new_tokens=NEW_TOKENS, stop_at_eos=False)
    result = generate(model, tokenizer, PROMPTS[:1], config)

    assert result.finish_reasons == ["length"]
    assert result.tokens == free.tokens


# --- KV cache size --------------------------------------------------------------------------------


def test_kv_bytes_match_cache_shapes(model, tokenizer):
    result = generate(model, tokenizer, PROMPTS, greedy())
    # The last sampled token is never fed back, so the cache contains one position less than prompt + new.
    positions = padded_width(tokenizer, PROMPTS) + NEW_TOKENS - 1

    assert result.cache.get_seq_length() == positions
    assert result.kv_bytes == expected_kv_bytes(model, len(PROMPTS), positions)


def test_kv_bytes_equal_tensor_sizes(model, tokenizer):
    result = generate(model, tokenizer, PROMPTS[:2], greedy())
    layers = result.cache.layers
    tensor_bytes = sum(layer.keys.nbytes + layer.values.nbytes for layer in layers)

    assert kv_cache_bytes(result.cache) == tensor_bytes
    assert result.kv_bytes == tensor_bytes


def test_kv_bytes_empty_cache_is_zero(model):
    assert kv_cache_bytes(dynamic_cache(model)) == 0


class ReportedSizeCache(DynamicCache):
    """Full cache that reports a fixed size of its own."""

    REPORTED_BYTES = 12_345

    def nbytes(self) -> int:
        return self.REPORTED_BYTES


def test_kv_bytes_use_cache_nbytes(model, tokenizer):
    cache = ReportedSizeCache(config=model.config)

    result = generate(model, tokenizer, PROMPTS[:1], greedy(4), cache=cache)

    assert result.kv_bytes == ReportedSizeCache.REPORTED_BYTES


# --- caller-supplied caches -----------------------------------------------------------------------


def test_cache_instance_is_used(model, tokenizer):
    cache = DynamicCache(config=model.config)

    result = generate(model, tokenizer, PROMPTS[:1], greedy(), cache=cache)

    assert result.cache is cache
    assert cache.get_seq_length() == result.prompt_lengths[0] + NEW_TOKENS - 1


def test_cache_factory_is_called(model, tokenizer):
    factory_calls = []

    def make_cache(target_model):
        factory_calls.append((target_model, DynamicCache(config=target_model.config)))
        return factory_calls[-1][1]

    result = generate(model, tokenizer, PROMPTS[:1], greedy(), cache=make_cache)

    assert len(factory_calls) == 1
    assert factory_calls[0][0] is model
    assert result.cache is factory_calls[0][1]
    assert result.cache.get_seq_length() == result.prompt_lengths[0] + NEW_TOKENS - 1


def test_default_cache_is_dynamic(model, tokenizer):
    result = generate(model, tokenizer, PROMPTS[:1], greedy(4))

    assert type(result.cache) is DynamicCache


def test_supplied_cache_keeps_greedy_output(model, tokenizer):
    plain = generate(model, tokenizer, PROMPTS, greedy())
    supplied = generate(model, tokenizer, PROMPTS, greedy(), cache=ReportedSizeCache(config=model.config))

    assert supplied.tokens == plain.tokens

