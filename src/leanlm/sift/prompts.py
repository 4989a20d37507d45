"""Every prompt SIFT sends to a model, by name, in one place.

A sticker is a short list of numbered atomic conditions taken from the question, followed by the one thing
the question asks, with no reasoning. Predictions end with the answer in \\boxed{}, which `answers.py` reads.
"""

from dataclasses import dataclass

# doubled braces: the templates below go through str.format
ANSWER_FORMAT = "Reason step by step, then give the final answer as \\boxed{{ANSWER}}."

STICKER_FORMAT = (
    "Write a sticker: the key facts of the problem as numbered conditions, one fact per line, then one line "
    "starting with 'Question:' that says exactly what is asked. Copy numbers exactly. Do not solve the problem "
    "and do not add facts that are not in it. Put the sticker between <sticker> and </sticker>."
)


@dataclass(frozen=True)
class PromptTemplate:
    """A named prompt: a system message and a user message with `{question}` and `{sticker}` fields."""

    name: str
    system: str
    user: str

    def messages(self, **fields: str) -> list[dict[str, str]]:
        """Return chat messages with the fields filled in."""
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.user.format(**fields)},
        ]


ZERO_SHOT_COT = PromptTemplate(
    name="zero_shot_cot",
    system="You are a careful problem solver.",
    user="{question}\n\n" + ANSWER_FORMAT,
)

STICKER = PromptTemplate(
    name="sticker",
    system="You extract the facts of a problem. You never solve it.",
    user="Problem:\n{question}\n\n" + STICKER_FORMAT,
)

PREDICT_FROM_STICKER = PromptTemplate(
    name="predict_from_sticker",
    system="You are a careful problem solver.",
    user="Solve the problem these facts describe.\n\n{sticker}\n\n" + ANSWER_FORMAT,
)

PREDICT_FROM_QUESTION_AND_STICKER = PromptTemplate(
    name="predict_from_question_and_sticker",
    system="You are a careful problem solver.",
    user="Problem:\n{question}\n\nKey facts of the problem:\n{sticker}\n\n" + ANSWER_FORMAT,
)

REFINE_STICKER = PromptTemplate(
    name="refine_sticker",
    system="You check that a sticker states a problem's facts exactly. You never solve the problem.",
    user=(
        "Problem:\n{question}\n\nSticker:\n{sticker}\n\nCompare the sticker with the problem. Add conditions "
        "that are missing, correct wrong ones, remove ones the problem does not state or does not need, and make "
        "the question line say exactly what is asked. " + STICKER_FORMAT
    ),
)

STICKER_FROM_REASONING = PromptTemplate(
    name="sticker_from_reasoning",
    system="You extract the facts a solution used. You never solve the problem again.",
    user=(
        "Problem:\n{question}\n\nA solution of it:\n{reasoning}\n\nList the facts of the problem this solution "
        "relies on, and the question it answers. " + STICKER_FORMAT
    ),
)

ALL_PROMPTS = {
    prompt.name: prompt
    for prompt in (
        ZERO_SHOT_COT, STICKER, PREDICT_FROM_STICKER, PREDICT_FROM_QUESTION_AND_STICKER, REFINE_STICKER,
        STICKER_FROM_REASONING,
    )
}
