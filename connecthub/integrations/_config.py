"""How long a client waits (`Timeout`) and how it retries (`RetryPolicy`), as value objects.

Defaults, in seconds:
    Timeout:     connect=5, read=30, write=30, pool=5
    RetryPolicy: max_attempts=3, backoff_base=0.5, max_delay=30,
                 statuses={429, 500, 502, 503, 504}, methods=IDEMPOTENT_METHODS
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

__all__ = ["IDEMPOTENT_METHODS", "RETRY_STATUSES", "RetryPolicy", "Timeout"]

# RFC 9110 9.2.2: repeating these has the same effect as sending them once.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Timeout:
    """Seconds to wait for a connection, for each read, for each write, and for a free
    connection from the pool."""

    connect: float = 5.0
    read: float = 30.0
    write: float = 30.0
    pool: float = 5.0

    def to_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long a client waits before trying a request again.

    A failure is retried while attempts remain if nothing reached the remote (connect error,
    connect or pool timeout), whatever the method; or if the method is in `methods` and the
    remote answered with a status in `statuses` or did not answer in time (read/write timeout,
    dropped connection). POST and PATCH are not in `methods` by default: the remote may already
    have acted on them. Add them only for an API that deduplicates (e.g. idempotency keys).

    The wait before attempt n+1 is the response's `Retry-After` if it has one, else a random
    time between 0 and `backoff_base * 2**(n-1)` ("full jitter"); never more than `max_delay`.
    """

    max_attempts: int = 3
    backoff_base: float = 0.5
    max_delay: float = 30.0
    statuses: frozenset[int] = RETRY_STATUSES
    methods: frozenset[str] = IDEMPOTENT_METHODS

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1 (1 means no retry)")
        if self.backoff_base < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy.backoff_base and max_delay must not be negative")
        # Accept any iterable and any case, so RetryPolicy(methods={"get", "post"}) just works.
        object.__setattr__(self, "statuses", frozenset(self.statuses))
        object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (counting from 1)."""
        requested = parse_retry_after(retry_after) if retry_after else None
        if requested is not None:
            return min(requested, self.max_delay)
        ceiling = min(self.max_delay, self.backoff_base * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)


def parse_retry_after(value: str, now: datetime | None = None) -> float | None:
    """Seconds asked for by a `Retry-After` header (delay-seconds or an HTTP date), or None."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)
