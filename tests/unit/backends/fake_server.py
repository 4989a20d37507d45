"""A scripted OpenAI-compatible chat completions server on 127.0.0.1, for the HTTP backend tests.

Each request takes the next `Step` of the script, and the last step repeats once the script runs out, so
`[Step(503)]` fails forever and `[Step(500), Step()]` fails once, then succeeds. A 200 reply echoes the last
message ("echo: <content>") and counts words as tokens: prompt tokens are the words of all messages and
completion tokens are the words of the reply.
"""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Step:
    """The status, delay and headers of the server's response to one request."""

    status: int = 200
    delay: float = 0.0  # seconds to wait before responding
    retry_after: str | None = None  # value of the Retry-After header, sent when not None
    usage: bool = True  # whether a 200 reply contains `usage`


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict[str, Any]
    time: float  # time.monotonic() on arrival


@dataclass
class FakeChatServer:
    script: list[Step] = field(default_factory=lambda: [Step()])
    delay_by_content: dict[str, float] = field(default_factory=dict)  # extra delay for a last-message content
    received: list[ReceivedRequest] = field(default_factory=list)
    max_active: int = 0  # most requests handled at the same time

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._http.daemon_threads = True
        self._http.block_on_close = False  # shutdown does not wait for a handler still sleeping in a slow step
        self._http.fake = self
        # A short poll interval lets `stop` return in milliseconds instead of the default half second.
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.01}, name="fake-chat-server", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def attempts(self) -> int:
        return len(self.received)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)

    def begin(self, request: ReceivedRequest) -> Step:
        """Record a request, count it as active, and return the step that sets its response."""
        with self._lock:
            self.received.append(request)
            self._active += 1
            self.max_active = max(self.max_active, self._active)
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def end(self) -> None:
        with self._lock:
            self._active -= 1


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        fake: FakeChatServer = self.server.fake
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        headers = {name.lower(): value for name, value in self.headers.items()}
        step = fake.begin(ReceivedRequest(self.path, headers, body, time.monotonic()))
        try:
            content = body["messages"][-1]["content"]
            time.sleep(step.delay + fake.delay_by_content.get(content, 0.0))
            if step.status == 200:
                self._send(200, _completion(body, content, step.usage))
            else:
                self._send(step.status, {"error": {"message": f"scripted HTTP {step.status}"}}, step.retry_after)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a read timeout) before the reply was written
        finally:
            fake.end()

    def _send(self, status: int, payload: dict[str, Any], retry_after: str | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest's output clean


def _completion(body: dict[str, Any], content: str, with_usage: bool) -> dict[str, Any]:
    text = f"echo: {content}"
    reply: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": body.get("model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }
    if with_usage:
        prompt_tokens = sum(len(message["content"].split()) for message in body["messages"])
        completion_tokens = len(text.split())
        reply["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
    return reply
