"""A chat backend that sends each request to an OpenAI-compatible chat completions server over HTTP."""

import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from leanlm.errors import InvalidArgumentError
from leanlm.runtime.backends.base import BackendError, ChatBackend, ChatReply, ChatRequest, check_requests
from leanlm.runtime.backends.retry import RATE_LIMITED, RetryPolicy, is_retryable_status, parse_retry_after

logger = logging.getLogger(__name__)

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
CHAT_COMPLETIONS_PATH = "/v1/chat/completions"
SERVICE_UNAVAILABLE = 503
_DETAIL_CHARS = 200  # how much of an error response body goes into an error message

# Transport failures worth another attempt. Other `httpx.TransportError`s (an unsupported URL scheme, a bad
# proxy setting) fail the same way every time.
_RETRYABLE_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class OpenAICompatibleBackend(ChatBackend):
    """Chat generation through `POST {base_url}/v1/chat/completions` of an OpenAI-compatible server.

    `base_url` is the server's root with or without a trailing `/v1` (`http://host:8000` and
    `http://host:8000/v1/` name the same endpoint). The API key is read once, here, from the environment
    variable `api_key_env`, and sent as `Authorization: Bearer <key>` when that variable is set and non-empty.

    A batch runs up to `concurrency` requests at once. Failures with 429, 5xx, a connection error or a timeout
    are retried as `retry` sets out, and other 4xx fail at once. Token counts come from the response's `usage`,
    and a response without usage raises `BackendError`, because callers count every call's tokens and an
    estimate would skew their totals.

    `read_timeout` bounds the wait for each response. Requests are not streamed, so the server sends nothing
    until the whole reply is generated, and the timeout must cover the longest generation.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        concurrency: int = 8,
        connect_timeout: float = 10.0,
        read_timeout: float = 300.0,
        retry: RetryPolicy | None = None,
    ):
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidArgumentError(f"concurrency must be a positive integer, got {concurrency!r}")
        for name, value in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout)):
            if not (isinstance(value, (int, float)) and value > 0):
                raise InvalidArgumentError(f"{name} must be a positive number of seconds, got {value!r}")
        if not model:
            raise InvalidArgumentError("model must name the model the server serves, got an empty string")

        self.base_url = _server_root(base_url)
        self.url = self.base_url + CHAT_COMPLETIONS_PATH
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self.retry = retry or RetryPolicy()

        self._api_key = os.environ.get(api_key_env) or None
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        # The worker threads share one client, because httpcore guards its connection pool with a lock.
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(
                connect=self.connect_timeout,
                read=self.read_timeout,
                write=self.connect_timeout,
                pool=self.connect_timeout,
            ),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    def __repr__(self) -> str:
        # The key stays out of the repr, so that logging or printing a backend never shows it.
        return f"{type(self).__name__}(url={self.url!r}, model={self.model!r}, concurrency={self.concurrency})"

    def close(self) -> None:
        self._client.close()

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatReply]:
        requests = check_requests(requests)
        if not requests:
            return []

        workers = min(self.concurrency, len(requests))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="leanlm-chat") as pool:
            futures = [pool.submit(self._complete, request) for request in requests]
            try:
                return [future.result() for future in futures]
            except BaseException:
                # Requests not yet started are dropped. Those in flight finish before the pool shuts down.
                for future in futures:
                    future.cancel()
                raise

    def _complete(self, request: ChatRequest) -> ChatReply:
        """Send one request, retrying as `self.retry` allows, and return its reply."""
        payload = {
            "model": self.model,
            "messages": request.messages,
            "max_tokens": request.max_new_tokens,
            "temperature": request.temperature,
        }
        max_attempts = self.retry.max_attempts
        for attempt in range(1, max_attempts + 1):
            status = None
            retry_after = None
            transport_error = None
            try:
                response = self._client.post(self.url, json=payload)
            except _RETRYABLE_ERRORS as err:
                failure = self._describe_transport_error(err)
                transport_error = err
            else:
                status = response.status_code
                if response.is_success:
                    return self._parse_reply(response, attempt)
                if not is_retryable_status(status):
                    raise self._rejected_error(response, attempt)
                failure = f"HTTP {status}{self._response_detail(response)}"
                if status in (RATE_LIMITED, SERVICE_UNAVAILABLE):
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))

            if attempt == max_attempts:
                raise BackendError(
                    f"POST {self.url} failed after {_attempts(attempt)} (last error: {failure}); "
                    f"{self._advice(status, isinstance(transport_error, httpx.ReadTimeout))}",
                    url=self.url,
                    status=status,
                    attempts=attempt,
                ) from transport_error
            delay = self.retry.delay(attempt, retry_after)
            logger.warning(
                "POST %s: attempt %d of %d failed (%s); retrying in %.2f s",
                self.url, attempt, max_attempts, failure, delay,
            )
            time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _parse_reply(self, response: httpx.Response, attempt: int) -> ChatReply:
        try:
            body = response.json()
            choice = body["choices"][0]
            text = choice["message"]["content"] or ""
            finish_reason = choice.get("finish_reason") or "unknown"
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise BackendError(
                f"POST {self.url} returned HTTP {response.status_code} but no chat completion "
                f"({type(err).__name__}: {err}); check that base_url points to an OpenAI-compatible server",
                url=self.url,
                status=response.status_code,
                attempts=attempt,
            ) from err

        usage = body.get("usage") if isinstance(body, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        input_tokens = usage.get("prompt_tokens")
        output_tokens = usage.get("completion_tokens")
        if not (_is_count(input_tokens) and _is_count(output_tokens)):
            raise BackendError(
                f"POST {self.url} returned a reply without usage.prompt_tokens and usage.completion_tokens "
                f"(usage: {usage or 'missing'}); token counts are required, so use a server that reports usage",
                url=self.url,
                status=response.status_code,
                attempts=attempt,
            )
        return ChatReply(
            text=text, input_tokens=input_tokens, output_tokens=output_tokens, finish_reason=str(finish_reason)
        )

    def _rejected_error(self, response: httpx.Response, attempt: int) -> BackendError:
        status = response.status_code
        if status in (401, 403):
            key_state = "set" if self._api_key else "not set"
            advice = f"check the API key in ${self.api_key_env} (it is {key_state})"
        elif status == 404:
            advice = f"check base_url ({self.base_url}) and that the server serves model {self.model!r}"
        else:
            advice = f"check the model name {self.model!r}, the messages and max_new_tokens"
        return BackendError(
            f"POST {self.url} was rejected with HTTP {status}{self._response_detail(response)} after "
            f"{_attempts(attempt)} (4xx other than 429 is not retried); {advice}",
            url=self.url,
            status=status,
            attempts=attempt,
        )

    def _response_detail(self, response: httpx.Response) -> str:
        """Return ` (message)` from an error response's body, on one line, or "" when the body is empty."""
        try:
            body = response.json()
            detail = body["error"]["message"] if isinstance(body.get("error"), dict) else body.get("error")
            detail = str(detail) if detail else response.text
        except (ValueError, AttributeError, KeyError):
            detail = response.text
        detail = " ".join(detail.split())[:_DETAIL_CHARS]
        if self._api_key:
            detail = detail.replace(self._api_key, "***")
        return f" ({detail})" if detail else ""

    def _describe_transport_error(self, err: httpx.TransportError) -> str:
        details = " ".join(str(err).split()) or "no details"
        if isinstance(err, httpx.ConnectTimeout):
            return f"connect timed out after {self.connect_timeout:g} s"
        if isinstance(err, httpx.ReadTimeout):
            return f"read timed out after {self.read_timeout:g} s"
        if isinstance(err, httpx.ConnectError):
            return f"connection failed: {details}"
        return f"{type(err).__name__}: {details}"

    def _advice(self, status: int | None, read_timed_out: bool) -> str:
        """Return what to do after the last attempt failed with `status` (None: no response came back)."""
        if status == RATE_LIMITED:
            return "the server is rate-limiting, so lower concurrency or wait and run again"
        if status is not None:
            return "the server is failing, so check its log and run again"
        if read_timed_out:
            return (
                f"the server at {self.base_url} is slow or overloaded, so raise read_timeout "
                f"(now {self.read_timeout:g} s), lower max_new_tokens or lower concurrency"
            )
        return f"check that the server is running and reachable at {self.base_url}"


def _server_root(base_url: str) -> str:
    """Return `base_url` without trailing slashes or a trailing `/v1`, after checking its scheme."""
    url = base_url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise InvalidArgumentError(
            f"base_url must start with http:// or https://, got {base_url!r}; for example http://127.0.0.1:8000"
        )
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def _attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
