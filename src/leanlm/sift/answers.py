"""Final answers of math word problems: extraction from model output, normalisation and equivalence.

`extract_answer` finds the final answer in a model's completion: the last `\\boxed{...}`, else the text
after the last "the answer is" or "answer:", else the last number. `normalize_answer` removes dollar
signs, `\\text{...}` wrappers, unit words after a number and thousands separators. `answers_equal`
compares a reference answer with a predicted one through math-verify, so `0.5`, `1/2` and `\\frac{1}{2}`
are equal, and falls back to string equality when math-verify cannot parse an answer.
"""

import logging
import re
import threading

from math_verify import parse, verify

logger = logging.getLogger(__name__)

# The timeout math-verify applies on the main thread. It is math-verify 0.9's default for both `parse`
# and `verify`, in seconds.
MATH_VERIFY_TIMEOUT_S = 5

# `\boxed` not followed by a letter, so `\boxedfoo` is not a box.
BOXED = re.compile(r"\\boxed(?![A-Za-z])")

# "The answer is", "The final answer is" and "Answer:", with the rest of the line after them.
ANSWER_PHRASE = re.compile(
    r"(?:\bthe\s+(?:final\s+)?answer\s+is\b\s*:?|\banswer\s*:)[ \t]*([^\n]*)",
    re.IGNORECASE,
)

# A sentence ends at a period, "!" or "?" followed by whitespace or the end of the line. A period between
# digits (3.5) does not end it.
SENTENCE_END = re.compile(r"[.!?](?=\s|$)")

# A number in running text: 1,000 and 1,000.5 (comma groups of exactly three digits), 12, 3.5 and .5.
# A minus sign counts only where it cannot be subtraction, so "10-3" gives 10 and 3, not -3.
NUMBER = re.compile(r"(?:(?<![\w)\]}])-)?(?:\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)")

# A plain number written with thousands separators, as ASCII commas or LaTeX's `{,}`.
GROUPED_NUMBER = re.compile(r"-?\d{1,3}(?:(?:,|\{,\})\d{3})+(?:\.\d+)?")
THOUSANDS_SEPARATOR = re.compile(r",|\{,\}")

# Text commands whose content is kept without the command, as in `\text{10 cm}` or `10\mbox{ dollars}`.
TEXT_COMMAND = re.compile(r"\\(?:text|textrm|textbf|mathrm|mbox)\s*\{([^{}]*)\}")

# Unit words removed after a number. Matching is case-sensitive, and single letters (m, g, h, s) are left
# out because answers such as "4m" or "6s" are usually expressions in a variable.
_UNIT_WORDS_BY_KIND = {
    "money": "dollars dollar cents cent euros euro pounds pound",
    "length": "kilometers kilometres km meters metres meter metre centimeters centimetres cm millimeters "
    "millimetres mm miles mile yards yard feet foot ft inches inch",
    "mass and volume": "kilograms kg grams gram lbs lb ounces ounce oz liters litres liter litre ml gallons "
    "gallon",
    "time": "hours hour hrs hr minutes minute min seconds second sec days day weeks week months month years year",
    "other": "degrees degree percent units unit mph",
}
UNIT_WORDS = tuple(word for words in _UNIT_WORDS_BY_KIND.values() for word in words.split())
_UNIT = "(?:" + "|".join(UNIT_WORDS) + ")"
# whitespace and LaTeX spacing commands (`\ `, `\,`, `\;`, `\quad`) between a number and its unit
_SPACE = r"(?:\s|\\[ ,;:!]|\\quad\b)*"
# "10 cm", "10 square feet", "60 miles per hour", "50%", "50\%", "30 cm^2", each after a digit at the end.
_UNIT_PHRASE = rf"(?:(?:square|sq\.?|cubic)\s+)?{_UNIT}\b(?:\^\{{?[23]\}}?)?(?:\s+per\s+{_UNIT}\b)?"
TRAILING_UNIT = re.compile(rf"(?<=\d){_SPACE}(?:{_UNIT_PHRASE}|\\?%)\s*$")


def extract_answer(text: str) -> str | None:
    """Find the final answer in a model's output, or return None when it contains none.

    The answer is the content of the last closed `\\boxed{...}` (or `\\boxed 5`, without braces), else the
    rest of the sentence after the last "the answer is" or "answer:", else the last number as written.
    """
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed

    phrased = _after_answer_phrase(text)
    if phrased is not None:
        return phrased

    numbers = NUMBER.findall(text)
    if numbers:
        return numbers[-1]
    return None


def _last_boxed(text: str) -> str | None:
    for match in reversed(list(BOXED.finditer(text))):
        content = _box_content(text, match.end())
        if content:
            return content
    return None


def _box_content(text: str, start: int) -> str | None:
    """Read a box's argument from `start`, just after `\\boxed`: a brace group or one bare token."""
    rest = text[start:]
    stripped = rest.lstrip()
    if stripped.startswith("{"):
        offset = start + len(rest) - len(stripped)
        return _brace_group(text, offset)

    # `\boxed 5`: a space, then one token that ends at whitespace or a closing `$`.
    bare = re.match(r"\s+([^\s$]+)", rest)
    if bare is None:
        return None
    return bare.group(1)


def _brace_group(text: str, open_index: int) -> str | None:
    """Return what is inside the brace group opening at `open_index`, or None if it never closes."""
    depth = 0
    for index in range(open_index, len(text)):
        char = text[index]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_index + 1 : index].strip()
    return None


def _after_answer_phrase(text: str) -> str | None:
    matches = list(ANSWER_PHRASE.finditer(text))
    if not matches:
        return None

    line = matches[-1].group(1)
    sentence_end = SENTENCE_END.search(line)
    if sentence_end is not None:
        line = line[: sentence_end.start()]
    answer = _strip_dollars_and_period(line)
    return answer or None


def _strip_dollars_and_period(text: str) -> str:
    """Strip surrounding whitespace, `$` signs and one trailing period."""
    text = text.strip().strip("$").strip()
    if text.endswith("."):
        text = text[:-1].rstrip().strip("$").strip()
    return text


def normalize_answer(answer: str) -> str:
    """Rewrite an answer into the form compared by `answers_equal`.

    Remove surrounding whitespace and `$` signs (including `\\$`), unwrap `\\text{...}` and similar
    commands and drop a trailing period. After a number, remove a unit word (see `UNIT_WORDS`) or a
    percent sign, so "50%" equals "50". Remove thousands separators only from a plain number (`1,000`
    and `1{,}000` become `1000`), so commas in tuples and lists such as `(1, 2)` or `1,2` are kept.
    """
    text = answer.replace("\\$", "")
    text = _strip_dollars_and_period(text)
    text = TEXT_COMMAND.sub(r"\1", text)
    text = _strip_dollars_and_period(text)
    text = TRAILING_UNIT.sub("", text)

    if GROUPED_NUMBER.fullmatch(text):
        text = THOUSANDS_SEPARATOR.sub("", text)
    return text


def answers_equal(reference: str | None, prediction: str | None) -> bool:
    """Compare a reference answer with a predicted one after `normalize_answer`.

    `reference` is the gold side of math-verify's `verify`, which is not symmetric. A predicted equation
    is compared by its right side when the reference is no equation, so `x=3` and `2x=3` both equal a
    reference `3`. A reference assignment `x=3` equals a predicted `3`, but a reference `2x=3` does not.
    None equals nothing, not even None. When math-verify parses neither or only one of the two answers,
    the normalised strings must be equal.
    """
    if reference is None or prediction is None:
        return False

    reference = normalize_answer(reference)
    prediction = normalize_answer(prediction)
    timeout_s = _math_verify_timeout()

    # math-verify extracts math only from inside LaTeX delimiters reliably: bare "(1, 2)" parses as 2.
    parsed_reference = parse(f"${reference}$", parsing_timeout=timeout_s)
    parsed_prediction = parse(f"${prediction}$", parsing_timeout=timeout_s)
    if not parsed_reference or not parsed_prediction:
        logger.debug(
            "math-verify parsed no expression from %r or %r, so the strings are compared",
            reference,
            prediction,
        )
        return reference == prediction

    return verify(parsed_reference, parsed_prediction, timeout_seconds=timeout_s)


def _math_verify_timeout() -> int | None:
    """Return the math-verify timeout for this thread: the default on the main thread, None elsewhere.

    math-verify 0.9 enforces its timeout with `signal.alarm`, and Python allows signals only on the main
    thread, so with a timeout `parse` and `verify` raise ValueError on any other thread. None disables the
    timeout, and math-verify then logs a one-time warning that the caller must bound the time itself. On
    the main thread math-verify installs its own SIGALRM handler for each call and ends with
    `signal.alarm(0)`, which cancels any alarm the caller had scheduled.
    """
    if threading.current_thread() is threading.main_thread():
        return MATH_VERIFY_TIMEOUT_S
    # NOTE: without the alarm, a pathological expression can keep a worker thread busy indefinitely.
    return None
