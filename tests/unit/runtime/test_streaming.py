"""Stop strings and the `on_text` stream of `leanlm.runtime.generate`.

The stop strings are cut from the model's own greedy output, because a random-weight model writes no
predictable text.
"""

from collections import defaultdict

from leanlm.runtime import SamplingConfig, generate

NEW_TOKENS = 24
PROMPTS = ["The river bends", "Every morning the baker lights the oven at five"]


class Recorder:
    """Stream callback that keeps every piece per row, in order."""

    def __init__(self) -> None:
        self.pieces: dict[int, list[str]] = defaultdict(list)

    def __call__(self, row: int, text: str) -> None:
        self.pieces[row].append(text)

    def joined(self, row: int) -> str:
        return "".join(self.pieces[row])

    def running_texts(self, row: int) -> list[str]:
        """Return the text streamed so far after each piece of `row`."""
        texts, so_far = [], ""
        for piece in self.pieces[row]:
            so_far += piece
            texts.append(so_far)
        return texts


def decoded_prefixes(tokenizer, tokens: list[int]) -> list[str]:
    """Return the text of the first k tokens, for k = 0 .. len(tokens)."""
    return [tokenizer.decode(tokens[:k], skip_special_tokens=True) for k in range(len(tokens) + 1)]


def pick_stop_string(tokenizer, tokens: list[int], length: int = 3) -> tuple[str, int]:
    """Choose `length` printable characters of the greedy text that start in one token and end in a later one.

    Returns (stop string, number of tokens generated when it first appears).
    """
    prefixes = decoded_prefixes(tokenizer, tokens)
    text = prefixes[-1]
    for start in range(2, len(text) - length):
        stop = text[start : start + length]
        if not stop.isprintable() or "\ufffd" in stop or text.find(stop) != start:
            continue
        first = next(k for k, prefix in enumerate(prefixes) if stop in prefix)
        crosses_token = start < len(prefixes[first - 1])
        if crosses_token:
            return stop, first
    raise AssertionError(f"no stop string candidate in {text!r}")


def greedy_tokens(model, tokenizer, prompts: list[str]) -> list[list[int]]:
    return generate(model, tokenizer, prompts, SamplingConfig(max_new_tokens=NEW_TOKENS)).tokens


# --- streaming ------------------------------------------------------------------------------------


def test_stream_joins_to_texts(model, tokenizer):
    recorder = Recorder()

    result = generate(model, tokenizer, PROMPTS, SamplingConfig(max_new_tokens=NEW_TOKENS), on_text=recorder)

    assert recorder.joined(0) == result.texts[0]
    assert recorder.joined(1) == result.texts[1]


def test_stream_sends_pieces_during_loop(model, tokenizer):
    recorder = Recorder()

    generate(model, tokenizer, PROMPTS, SamplingConfig(max_new_tokens=NEW_TOKENS), on_text=recorder)

    assert len(recorder.pieces[0]) > 1
    assert len(recorder.pieces[1]) > 1
    assert all(recorder.pieces[0])


def test_stream_of_sampled_text(model, tokenizer):
    recorder = Recorder()
    config = SamplingConfig(max_new_tokens=NEW_TOKENS, temperature=1.0, seed=3)

    result = generate(model, tokenizer, PROMPTS, config, on_text=recorder)

    assert recorder.joined(0) == result.texts[0]
    assert recorder.joined(1) == result.texts[1]


# --- stop strings ---------------------------------------------------------------------------------


def test_stop_string_ends_row(model, tokenizer):
    tokens = greedy_tokens(model, tokenizer, PROMPTS[:1])[0]
    stop, stop_step = pick_stop_string(tokenizer, tokens)
    full_text = tokenizer.decode(tokens, skip_special_tokens=True)

    config = SamplingConfig(max_new_tokens=NEW_TOKENS, stop_strings=(stop,))
    result = generate(model, tokenizer, PROMPTS[:1], config)

    assert result.finish_reasons == ["stop"]
    assert result.tokens[0] == tokens[:stop_step]
    assert result.texts[0] == full_text[: full_text.find(stop)]
    assert stop not in result.texts[0]


def test_stop_string_not_streamed(model, tokenizer):
    tokens = greedy_tokens(model, tokenizer, PROMPTS[:1])[0]
    stop, _ = pick_stop_string(tokenizer, tokens)
    recorder = Recorder()

    config = SamplingConfig(max_new_tokens=NEW_TOKENS, stop_strings=(stop,))
    result = generate(model, tokenizer, PROMPTS[:1], config, on_text=recorder)

    assert recorder.joined(0) == result.texts[0]
    for streamed in recorder.running_texts(0):
        # A piece that reached into the stop string would make the running text outgrow the final one.
        assert result.texts[0].startswith(streamed), f"streamed {streamed!r} past {result.texts[0]!r}"


def test_earliest_stop_string_wins(model, tokenizer):
    tokens = greedy_tokens(model, tokenizer, PROMPTS[:1])[0]
    early, _ = pick_stop_string(tokenizer, tokens, length=2)
    full_text = tokenizer.decode(tokens, skip_special_tokens=True)
    late = full_text[-3:]
    assert full_text.find(late) > full_text.find(early), "the later stop string occurs first; pick others"

    config = SamplingConfig(max_new_tokens=NEW_TOKENS, stop_strings=(late, early))
    result = generate(model, tokenizer, PROMPTS[:1], config)

    assert result.finish_reasons == ["stop"]
    assert result.texts[0] == full_text[: full_text.find(early)]


def test_stop_string_row_others_continue(model, tokenizer):
    tokens = greedy_tokens(model, tokenizer, PROMPTS)
    stop, stop_step = pick_stop_string(tokenizer, tokens[0])
    other_text = tokenizer.decode(tokens[1], skip_special_tokens=True)
    assert stop not in other_text, "the stop string also occurs in the other row; pick other prompts"

    config = SamplingConfig(max_new_tokens=NEW_TOKENS, stop_strings=(stop,))
    result = generate(model, tokenizer, PROMPTS, config)

    assert result.finish_reasons == ["stop", "length"]
    assert len(result.tokens[0]) == stop_step
    assert result.tokens[1] == tokens[1]


def test_unfinished_stop_prefix_is_released(model, tokenizer):
    tokens = greedy_tokens(model, tokenizer, PROMPTS[:1])[0]
    full_text = tokenizer.decode(tokens, skip_special_tokens=True)
    # The final character starts a stop string that never completes, so the loop keeps it back until the end.
    never_completed = full_text[-1] + "\u2603\u2603"
    recorder = Recorder()

    config = SamplingConfig(max_new_tokens=NEW_TOKENS, stop_strings=(never_completed,))
    result = generate(model, tokenizer, PROMPTS[:1], config, on_text=recorder)

    assert result.finish_reasons == ["length"]
    assert result.texts[0] == full_text
    assert recorder.joined(0) == full_text
