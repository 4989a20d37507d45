"""When to send a failed HTTP request again, and how long to wait first."""

import email.utils
import math
import time
from dataclasses import dataclass

from leanlm.errors import InvalidArgumentError

# 429 Too Many Requests and every 5xx server error are worth another try. Other 4xx mean the request is wrong.
RATE_LIMITED = 429


def is_retryable_status(status: int) -> bool:
    return status == RATE_LIMITED or 500 <= status <= 599


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and waits for requests that fail with 429, 5xx, a connection error or a timeout.

    The wait before attempt n + 1 is `initial_backoff * 2 ** (n - 1)` seconds, capped at `max_backoff`.
    When a 429 or 503 response carries a Retry-After header, the wait is that value instead, capped at
    `max_retry_after` seconds.
    """

    max_attempts: int = 4  # the first request included
    initial_backoff: float = 1.0  # seconds before the second attempt
    max_backoff: float = 16.0  # seconds
    max_retry_after: float = 60.0  # seconds

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise InvalidArgumentError(f"max_attempts must be an integer >= 1, got {self.max_attempts!r}")
        for name in ("initial_backoff", "max_backoff", "max_retry_after"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise InvalidArgumentError(f"{name} must be a finite number of seconds >= 0, got {value!r}")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Return the seconds to wait after failed attempt `attempt` (counted from 1)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return min(self.initial_backoff * 2 ** (attempt - 1), self.max_backoff)


def parse_retry_after(value: str | None) -> float | None:
    """Return the wait in seconds that a Retry-After header requests, or None when it is missing or invalid.

    HTTP allows either a number of seconds or an HTTP date in that header.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        seconds = _seconds_until(value)
    if seconds is None or not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _seconds_until(http_date: str) -> float | None:
    try:
        moment = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # an HTTP date is always GMT, but a malformed one may lack the zone
        return None
    return moment.timestamp() - time.time()
