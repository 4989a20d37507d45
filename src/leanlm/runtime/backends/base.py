"""The chat backend interface: a batch of chat requests in, one reply per request out, with token counts."""

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

from leanlm.errors import InvalidArgumentError, LeanLMError


class BackendError(LeanLMError):
    """A chat backend failed to produce a reply: the server rejected the request, failed, or was unreachable.

    `status` is the last HTTP status received (None when no response came back), and `attempts` is the
    number of requests sent before giving up.
    """

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None, attempts: int = 0):
        super().__init__(message)
        self.url = url
        self.status = status
        self.attempts = attempts


@dataclass
class ChatRequest:
    """One conversation to continue: messages of the OpenAI chat format and the sampling settings.

    Each message is a mapping with a `role` ("system", "user", "assistant", or any role the model's chat
    template accepts) and a `content` string. `temperature == 0` means greedy decoding.
    """

    messages: Sequence[Mapping[str, str]]
    max_new_tokens: int = 256
    temperature: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.messages, (str, Mapping)) or len(self.messages) == 0:
            raise InvalidArgumentError(
                "messages must be a non-empty list of {'role': ..., 'content': ...} mappings, "
                f"got {self.messages!r}"
            )
        self.messages = [_check_message(message, index) for index, message in enumerate(self.messages)]
        tokens = self.max_new_tokens
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens <= 0:
            raise InvalidArgumentError(f"max_new_tokens must be a positive integer, got {tokens!r}")
        temperature = self.temperature
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
            raise InvalidArgumentError(f"temperature must be a finite number >= 0 (0 is greedy), got {temperature!r}")


@dataclass(frozen=True)
class ChatReply:
    """The assistant's reply to one request, with the tokens the call consumed and produced.

    `finish_reason` uses the OpenAI chat API's words: "stop" (end of sequence or a stop string), "length"
    (`max_new_tokens` reached), or any other value a server returns, such as "content_filter".
    """

    text: str
    input_tokens: int  # prompt tokens after the chat template, without padding
    output_tokens: int  # generated tokens, including the end-of-sequence token when one was generated
    finish_reason: str


class ChatBackend(ABC):
    """A way to run batches of chat requests: a model in this process, or a server over HTTP.

    A backend is a context manager, and leaving the `with` block closes its connections, if it has any.
    """

    @abstractmethod
    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatReply]:
        """Generate one reply per request and return the replies in request order.

        Raises `BackendError` when a reply cannot be produced and `InvalidArgumentError` for bad requests.
        """

    def close(self) -> None:
        """Close connections or free other resources. The base class has none."""

    def __enter__(self) -> "ChatBackend":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def check_requests(requests: Sequence[ChatRequest]) -> list[ChatRequest]:
    """Return the requests as a list, raising `InvalidArgumentError` for anything that is not a `ChatRequest`."""
    if isinstance(requests, ChatRequest):
        raise InvalidArgumentError("chat() takes a list of ChatRequest; wrap a single request in a list")
    requests = list(requests)
    for index, request in enumerate(requests):
        if not isinstance(request, ChatRequest):
            raise InvalidArgumentError(
                f"request {index} is a {type(request).__name__}, not a ChatRequest; build it with "
                "ChatRequest(messages=[{'role': 'user', 'content': ...}])"
            )
    return requests


def _check_message(message: Mapping[str, str], index: int) -> dict[str, str]:
    if not isinstance(message, Mapping):
        raise InvalidArgumentError(
            f"message {index} must be a mapping with 'role' and 'content', got {type(message).__name__}"
        )
    role = message.get("role")
    content = message.get("content")
    if not isinstance(role, str) or not role:
        raise InvalidArgumentError(
            f"message {index} has an invalid role {role!r}; use a non-empty string such as 'user'"
        )
    if not isinstance(content, str):
        raise InvalidArgumentError(f"message {index} has invalid content {content!r}; content must be a string")
    return {"role": role, "content": content}
