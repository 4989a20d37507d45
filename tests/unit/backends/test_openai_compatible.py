"""`OpenAICompatibleBackend` against a scripted server on 127.0.0.1: replies, retries, errors, headers, concurrency."""

import logging
import socket
import time

import pytest

from leanlm.errors import InvalidArgumentError, LeanLMError
from leanlm.runtime.backends import BackendError, ChatRequest, OpenAICompatibleBackend, RetryPolicy

from .fake_server import FakeChatServer, Step

KEY_ENV = "LEANLM_TEST_CHAT_API_KEY"
SECRET = "sk-test-secret-4711"

# Waits short enough that a test with every retry still takes well under a second.
FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.01, max_retry_after=0.2)


def make_backend(base_url: str, **options) -> OpenAICompatibleBackend:
    settings = {"api_key_env": KEY_ENV, "connect_timeout": 1.0, "read_timeout": 2.0, "retry": FAST_RETRY}
    settings.update(options)
    return OpenAICompatibleBackend(base_url, "test-model", **settings)


def ask(content: str, max_new_tokens: int = 16, temperature: float = 0.0) -> ChatRequest:
    return ChatRequest([{"role": "user", "content": content}], max_new_tokens=max_new_tokens, temperature=temperature)


def unused_port() -> int:
    """Return a loopback port that nothing listens on: bind it, read it, release it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(autouse=True)
def no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


def test_batch_replies_in_request_order(server: FakeChatServer) -> None:
    # The first requests finish last, so replies in order prove reordering by index, not by arrival.
    contents = [f"question number {i}" for i in range(6)]
    server.delay_by_content = {contents[0]: 0.15, contents[1]: 0.1}
    requests = [ask(content, max_new_tokens=10 + i, temperature=0.5) for i, content in enumerate(contents)]

    with make_backend(server.url, concurrency=3) as backend:
        replies = backend.chat(requests)

    assert [reply.text for reply in replies] == [f"echo: {content}" for content in contents]
    assert [reply.input_tokens for reply in replies] == [3] * 6
    assert [reply.output_tokens for reply in replies] == [4] * 6
    assert [reply.finish_reason for reply in replies] == ["stop"] * 6
    bodies = {request.body["messages"][-1]["content"]: request.body for request in server.received}
    assert bodies[contents[2]]["model"] == "test-model"
    assert bodies[contents[2]]["max_tokens"] == 12
    assert bodies[contents[2]]["temperature"] == 0.5
    assert server.attempts == 6


def test_empty_batch_sends_nothing(server: FakeChatServer) -> None:
    with make_backend(server.url) as backend:
        assert backend.chat([]) == []
    assert server.attempts == 0


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_base_url_with_or_without_v1(server: FakeChatServer, suffix: str) -> None:
    with make_backend(server.url + suffix) as backend:
        backend.chat([ask("hello")])

    assert backend.url == server.url + "/v1/chat/completions"
    assert server.received[0].path == "/v1/chat/completions"


def test_invalid_base_url_scheme() -> None:
    with pytest.raises(InvalidArgumentError, match="must start with http"):
        make_backend("127.0.0.1:8000")


def test_500_then_success_retries(server: FakeChatServer, caplog: pytest.LogCaptureFixture) -> None:
    server.script = [Step(500), Step()]

    with caplog.at_level(logging.WARNING), make_backend(server.url) as backend:
        replies = backend.chat([ask("hello there")])

    assert replies[0].text == "echo: hello there"
    assert server.attempts == 2
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "attempt 1 of 3" in warnings[0]
    assert "HTTP 500" in warnings[0]


def test_retry_after_header_on_429(server: FakeChatServer) -> None:
    # The server requests 1 s and the policy caps that at 0.2 s, far above its 0.001 s backoff.
    server.script = [Step(429, retry_after="1"), Step()]

    with make_backend(server.url) as backend:
        replies = backend.chat([ask("hello")])

    assert replies[0].text == "echo: hello"
    assert server.attempts == 2
    gap = server.received[1].time - server.received[0].time
    assert gap >= 0.19
    assert gap < 0.9


def test_gives_up_after_max_attempts(server: FakeChatServer) -> None:
    server.script = [Step(503)]

    with make_backend(server.url) as backend, pytest.raises(BackendError) as caught:
        backend.chat([ask("hello")])

    message = str(caught.value)
    assert server.attempts == 3
    assert caught.value.status == 503
    assert caught.value.attempts == 3
    assert isinstance(caught.value, LeanLMError)
    assert "\n" not in message
    assert f"POST {server.url}/v1/chat/completions" in message
    assert "HTTP 503" in message
    assert "3 attempts" in message
    assert "check its log" in message


def test_429_exhausted_advises_lower_concurrency(server: FakeChatServer) -> None:
    server.script = [Step(429)]

    with make_backend(server.url) as backend, pytest.raises(BackendError, match="lower concurrency") as caught:
        backend.chat([ask("hello")])

    assert caught.value.status == 429
    assert server.attempts == 3


def test_400_is_not_retried(server: FakeChatServer) -> None:
    server.script = [Step(400), Step()]

    with make_backend(server.url) as backend, pytest.raises(BackendError) as caught:
        backend.chat([ask("hello")])

    message = str(caught.value)
    assert server.attempts == 1
    assert caught.value.status == 400
    assert "HTTP 400" in message
    assert "scripted HTTP 400" in message  # the server's own error message
    assert "1 attempt " in message
    assert "not retried" in message


def test_401_names_key_variable(server: FakeChatServer) -> None:
    server.script = [Step(401)]

    with make_backend(server.url) as backend, pytest.raises(BackendError) as caught:
        backend.chat([ask("hello")])

    assert f"${KEY_ENV}" in str(caught.value)
    assert "not set" in str(caught.value)
    assert server.attempts == 1


def test_read_timeout_gives_clear_error(server: FakeChatServer) -> None:
    server.script = [Step(delay=0.5)]

    started = time.monotonic()
    retry = RetryPolicy(max_attempts=2, initial_backoff=0.001)
    with make_backend(server.url, read_timeout=0.1, retry=retry) as backend, pytest.raises(BackendError) as caught:
        backend.chat([ask("hello")])
    elapsed = time.monotonic() - started

    message = str(caught.value)
    assert caught.value.status is None
    assert caught.value.attempts == 2
    assert server.attempts == 2
    assert "\n" not in message
    assert "read timed out after 0.1 s" in message
    assert "2 attempts" in message
    assert "raise read_timeout" in message
    assert elapsed < 1.0


def test_unreachable_port_gives_clear_error() -> None:
    url = f"http://127.0.0.1:{unused_port()}"

    with make_backend(url) as backend, pytest.raises(BackendError) as caught:
        backend.chat([ask("hello")])

    message = str(caught.value)
    assert caught.value.status is None
    assert caught.value.attempts == 3
    assert "\n" not in message
    assert f"POST {url}/v1/chat/completions" in message
    assert "connection failed" in message
    assert "3 attempts" in message
    assert "check that the server is running" in message


def test_missing_usage_raises(server: FakeChatServer) -> None:
    server.script = [Step(usage=False)]

    with make_backend(server.url) as backend, pytest.raises(BackendError, match="without usage") as caught:
        backend.chat([ask("hello")])

    assert server.attempts == 1
    assert caught.value.status == 200


def test_authorization_sent_when_key_set(server: FakeChatServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)

    with make_backend(server.url) as backend:
        backend.chat([ask("hello")])

    assert server.received[0].headers["authorization"] == f"Bearer {SECRET}"


def test_authorization_absent_without_key(server: FakeChatServer) -> None:
    with make_backend(server.url) as backend:
        backend.chat([ask("hello")])

    assert "authorization" not in server.received[0].headers


def test_key_never_logged(
    server: FakeChatServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    server.script = [Step(500), Step(401)]

    with caplog.at_level(logging.DEBUG), make_backend(server.url) as backend:
        with pytest.raises(BackendError) as caught:
            backend.chat([ask("hello")])

    assert len(caplog.records) > 0
    assert SECRET not in caplog.text
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(backend)


def test_concurrency_limit_respected(server: FakeChatServer) -> None:
    server.script = [Step(delay=0.1)]

    with make_backend(server.url, concurrency=3) as backend:
        replies = backend.chat([ask(f"request {i}") for i in range(8)])

    assert len(replies) == 8
    assert server.attempts == 8
    assert server.max_active == 3


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"read_timeout": 0}, "read_timeout"),
        ({"connect_timeout": -1.0}, "connect_timeout"),
    ],
)
def test_invalid_options_rejected(options: dict, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        make_backend("http://127.0.0.1:8000", **options)
