"""Checks of `ChatRequest` and `RetryPolicy`, and parsing of the Retry-After header."""

import email.utils
import time

import pytest

from leanlm.errors import InvalidArgumentError
from leanlm.runtime.backends import ChatRequest, RetryPolicy
from leanlm.runtime.backends.retry import is_retryable_status, parse_retry_after

USER = {"role": "user", "content": "hello"}


def test_request_copies_messages() -> None:
    messages = [{"role": "system", "content": "be brief"}, USER]
    request = ChatRequest(messages, max_new_tokens=4)
    messages.append({"role": "assistant", "content": "later"})

    assert request.messages == [{"role": "system", "content": "be brief"}, USER]


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([], "non-empty list"),
        ("hello", "non-empty list"),
        (USER, "non-empty list"),
        (["hello"], "message 0 must be a mapping"),
        ([{"content": "hello"}], "message 0 has an invalid role"),
        ([USER, {"role": "user"}], "message 1 has invalid content"),
    ],
)
def test_request_rejects_bad_messages(messages, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        ChatRequest(messages)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 2.5}, "max_new_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
    ],
)
def test_request_rejects_bad_settings(settings: dict, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        ChatRequest([USER], **settings)


def test_policy_backoff_doubles_then_caps() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=3.0)

    assert [policy.delay(attempt) for attempt in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_policy_caps_retry_after() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_retry_after=10.0)

    assert policy.delay(1, retry_after=4.0) == 4.0
    assert policy.delay(1, retry_after=120.0) == 10.0


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"initial_backoff": -1.0}, "initial_backoff"),
        ({"max_retry_after": float("inf")}, "max_retry_after"),
    ],
)
def test_policy_rejects_bad_settings(settings: dict, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        RetryPolicy(**settings)


def test_retry_after_seconds_and_date() -> None:
    in_thirty_seconds = email.utils.formatdate(time.time() + 30, usegmt=True)

    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 2 ") == 2.0
    assert 25.0 < parse_retry_after(in_thirty_seconds) <= 30.0
    assert parse_retry_after("-3") == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "nan"])
def test_retry_after_invalid_is_none(value) -> None:
    assert parse_retry_after(value) is None


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (500, True), (503, True), (400, False), (404, False)])
def test_retryable_statuses(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable
