"""Tests of answer extraction, normalisation and equivalence for math word problems."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from leanlm.sift.answers import answers_equal, extract_answer, normalize_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(r"So $x = \boxed{\frac{1}{2}}$.", r"\frac{1}{2}", id="fraction-in-box"),
        pytest.param(
            r"\boxed{\left\{ {1}, \{2\} \right\}}", r"\left\{ {1}, \{2\} \right\}", id="nested-braces"
        ),
        pytest.param(r"First \boxed{1}, then \boxed{2}, finally \boxed{3}.", "3", id="last-box-wins"),
        pytest.param(r"\boxed{5} but then \boxed{6", "5", id="unclosed-last-box"),
        pytest.param(r"Maybe 7. The answer is 8. \boxed{9", "8", id="unclosed-box-to-phrase"),
        pytest.param(r"We get \boxed 4 in the end", "4", id="box-without-braces"),
        pytest.param(r"$\boxed 12$", "12", id="box-without-braces-in-math"),
        pytest.param(r"\boxed{ 7 }", "7", id="box-content-stripped"),
        pytest.param("The answer is 42.", "42", id="answer-is"),
        pytest.param("Answer: $3/4$", "3/4", id="answer-colon"),
        pytest.param("answer: 12\nThe answer is $x = 3.5$. Done.", "x = 3.5", id="last-phrase-wins"),
        pytest.param("THE ANSWER IS 11", "11", id="phrase-case-insensitive"),
        pytest.param("The final answer is $\\$15$.", "\\$15", id="final-answer-is"),
        pytest.param("She had 3 apples and lost 5, so -2 remain.", "-2", id="last-number-negative"),
        pytest.param("Each costs 2 dollars, so 3 cost 6.75 dollars.", "6.75", id="last-number-decimal"),
        pytest.param("He walked 3 miles and earned 1,000 points", "1,000", id="last-number-thousands"),
        pytest.param("10-3=7 so we write 10-3", "3", id="minus-as-subtraction"),
        pytest.param("The answer is", None, id="empty-phrase-no-number"),
        pytest.param("I do not know.", None, id="no-answer"),
        pytest.param(r"\boxed{}", None, id="empty-box"),
        pytest.param("", None, id="empty-text"),
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param("  $42$ ", "42", id="dollar-signs-and-spaces"),
        pytest.param(r"\$10", "10", id="escaped-dollar"),
        pytest.param("3.", "3", id="trailing-period"),
        pytest.param("3.5", "3.5", id="decimal-kept"),
        pytest.param("1,000", "1000", id="thousands-separator"),
        pytest.param("-1,234,567.5", "-1234567.5", id="several-separators"),
        pytest.param(r"1{,}000", "1000", id="latex-thousands-separator"),
        pytest.param("(1, 2)", "(1, 2)", id="tuple-kept"),
        pytest.param("1,2", "1,2", id="list-kept"),
        pytest.param("(1,000, 2)", "(1,000, 2)", id="separator-in-tuple-kept"),
        pytest.param("10,00", "10,00", id="two-digit-group-kept"),
        pytest.param("10 dollars", "10", id="unit-word"),
        pytest.param("1,000 dollars", "1000", id="unit-and-separator"),
        pytest.param(r"\text{10 cm}", "10", id="text-wrapped-unit"),
        pytest.param(r"10\ \text{cm}", "10", id="latex-space-before-unit"),
        pytest.param(r"\text{red}", "red", id="text-wrapper-removed"),
        pytest.param("12 square feet", "12", id="square-unit"),
        pytest.param("60 miles per hour", "60", id="unit-per-unit"),
        pytest.param("30 cm^2", "30", id="unit-with-exponent"),
        pytest.param("50%", "50", id="percent-sign"),
        pytest.param(r"50\%", "50", id="escaped-percent-sign"),
        pytest.param("4m", "4m", id="single-letter-kept"),
        pytest.param("10 apples", "10 apples", id="unlisted-word-kept"),
        pytest.param("x = 3", "x = 3", id="equation-kept"),
    ],
)
def test_normalize_answer(answer: str, expected: str) -> None:
    assert normalize_answer(answer) == expected


@pytest.mark.parametrize(
    ("reference", "prediction", "expected"),
    [
        pytest.param("0.5", "1/2", True, id="decimal-fraction"),
        pytest.param("1/2", r"\frac{1}{2}", True, id="slash-frac"),
        pytest.param(r"\frac{1}{2}", r"\dfrac12", True, id="frac-dfrac"),
        pytest.param(r"\dfrac12", "0.5", True, id="dfrac-decimal"),
        pytest.param("1,000", "1000", True, id="thousands-separator"),
        pytest.param("1000", "1,000", True, id="thousands-separator-reversed"),
        pytest.param("10", "10 dollars", True, id="unit-word"),
        pytest.param("10", r"\text{10 cm}", True, id="text-wrapped-unit"),
        pytest.param("10", "10 cm", True, id="bare-unit"),
        pytest.param("3", "3.0", True, id="integer-float"),
        pytest.param("$3$", "3", True, id="dollar-delimiters"),
        pytest.param("3", "x=3", True, id="predicted-assignment"),
        pytest.param("x=3", "3", True, id="reference-assignment"),
        pytest.param("3", "2x=3", True, id="predicted-equation-right-side"),
        pytest.param("2x=3", "3", False, id="reference-equation-not-unwrapped"),
        pytest.param("y=3", "x=3", False, id="different-variables"),
        pytest.param("2", "3", False, id="different-integers"),
        pytest.param("1/3", "0.33", False, id="rounded-decimal"),
        pytest.param("(1,2)", "(1, 2)", True, id="tuple-spacing"),
        pytest.param("(1,2)", "(2,1)", False, id="tuple-order"),
        pytest.param(r"\sqrt{2}", "1.41421356", True, id="numeric-root"),
        pytest.param("50%", "50", True, id="percent-sign"),
        pytest.param(r"\frac{1}{2", r"\frac{1}{2", True, id="unparsable-same-string"),
        pytest.param(r"\frac{1}{2", "1/2", False, id="unparsable-one-side"),
        pytest.param(r"\text{red}", r"\text{blue}", False, id="different-words"),
    ],
)
def test_answers_equal(reference: str, prediction: str, expected: bool) -> None:
    assert answers_equal(reference, prediction) is expected


@pytest.mark.parametrize(
    ("reference", "prediction"),
    [
        pytest.param(None, "3", id="reference-none"),
        pytest.param("3", None, id="prediction-none"),
        pytest.param(None, None, id="both-none"),
    ],
)
def test_answers_equal_none(reference: str | None, prediction: str | None) -> None:
    assert answers_equal(reference, prediction) is False


def test_answers_equal_in_worker_thread() -> None:
    # math-verify's signal-based timeout raises ValueError outside the main thread unless it is disabled.
    with ThreadPoolExecutor(max_workers=2) as pool:
        equal = pool.submit(answers_equal, "0.5", r"\frac{1}{2}")
        different = pool.submit(answers_equal, "2", "3")

        assert equal.result() is True
        assert different.result() is False
