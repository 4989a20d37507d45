"""Incremental detokenisation of one row: half characters and stop-string prefixes are held back."""


from leanlm.runtime.streaming import REPLACEMENT_CHAR, RowText


def byte_ids(tokenizer, text: str) -> list[int]:
    """Tokenise `text` without special tokens. The fixture's BPE never saw "€", so "€" becomes three byte tokens."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def stream(row: RowText, ids: list[int]) -> list[str]:
    """Append `ids` until the row stops, then flush, and return every piece (empty ones included)."""
    pieces = []
    for token in ids:
        pieces.append(row.append(token))
        if row.stopped:
            break
    pieces.append(row.flush())
    return pieces


def test_euro_is_three_byte_tokens(tokenizer):
    ids = byte_ids(tokenizer, "€")

    assert len(ids) == 3
    assert tokenizer.decode(ids[:1]) == REPLACEMENT_CHAR


def test_half_character_held_back(tokenizer):
    row = RowText(tokenizer)

    pieces = stream(row, byte_ids(tokenizer, "a€b"))

    assert "".join(pieces) == "a€b"
    assert all(REPLACEMENT_CHAR not in piece for piece in pieces)


def test_stop_prefix_held_then_released(tokenizer):
    row = RowText(tokenizer, ("bz",))
    ids = byte_ids(tokenizer, "abc")

    first = row.append(ids[0])
    second = row.append(ids[1])
    third = row.append(ids[2])

    assert (first, second, third) == ("a", "", "bc")
    assert not row.stopped


def test_stop_string_cut_from_text(tokenizer):
    row = RowText(tokenizer, ("bc",))

    pieces = stream(row, byte_ids(tokenizer, "abcd"))

    assert row.stopped
    assert row.text == "a"
    assert "".join(pieces) == "a"


def test_stop_string_inside_one_token(tokenizer):
    ids = byte_ids(tokenizer, " the")
    assert len(ids) == 1, "the fixture's BPE should have learned ' the' as one token"
    row = RowText(tokenizer, ("h",))

    pieces = stream(row, ids)

    assert row.text == " t"
    assert "".join(pieces) == " t"


def test_multibyte_stop_string_cut(tokenizer):
    row = RowText(tokenizer, ("b€",))

    stream(row, byte_ids(tokenizer, "ab€"))

    assert row.stopped
    assert row.text == "a"


def test_stop_prefix_before_half_char_held(tokenizer):
    row = RowText(tokenizer, ("b€",))

    pieces = stream(row, byte_ids(tokenizer, "ab€"))

    assert "".join(pieces) == row.text
