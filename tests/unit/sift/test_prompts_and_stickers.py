"""SIFT's named prompts and the sticker block of a reply."""

import pytest

from leanlm.sift.prompts import ALL_PROMPTS
from leanlm.sift.sticker import extract_sticker, follows_sticker_format

FIELDS = {"question": "What is {x} if x = 2?", "sticker": "1. x = 2\nQuestion: x?", "reasoning": "x is 2"}


@pytest.mark.parametrize("name", sorted(ALL_PROMPTS))
def test_prompt_fills_its_fields(name):
    messages = ALL_PROMPTS[name].messages(**FIELDS)

    assert [m["role"] for m in messages] == ["system", "user"]
    assert "{question}" not in messages[1]["content"]
    assert "What is {x} if x = 2?" in messages[1]["content"] or name == "predict_from_sticker"


def test_prediction_prompts_ask_for_boxed_answer():
    for name in ("zero_shot_cot", "predict_from_sticker", "predict_from_question_and_sticker"):
        assert "\\boxed{ANSWER}" in ALL_PROMPTS[name].messages(**FIELDS)[1]["content"], name


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Sure.\n<sticker>\n1. a = 3\nQuestion: a?\n</sticker>\nDone.", "1. a = 3\nQuestion: a?"),
        ("<sticker>1. old</sticker> then <sticker>1. b = 4\nQuestion: b?</sticker>", "1. b = 4\nQuestion: b?"),
        ("Here it is:\n1. Tom has 3 apples.\n2. He eats 1.\nQuestion: How many are left?", "1. Tom has 3 apples.\n2. He eats 1.\nQuestion: How many are left?"),
        ("The answer is 2.", None),
        ("1. Tom has 3 apples.\n2. He eats 1.", None),
        ("<sticker>   </sticker>", None),
    ],
    ids=["tagged", "last-block", "untagged", "no-sticker", "no-question", "empty-block"],
)
def test_extract_sticker(reply, expected):
    assert extract_sticker(reply) == expected


@pytest.mark.parametrize(
    ("sticker", "expected"),
    [("1. x = 2\nQuestion: x?", True), ("Question: x?\n1. x = 2", False), ("x is 2", False), (None, False)],
)
def test_sticker_format(sticker, expected):
    assert follows_sticker_format(sticker) is expected
