"""Counting the Prefect API calls a piece of code makes, and which of them are writes.

`count_api_calls()` wraps httpx's default transports (sync and async) for the duration of a
`with` block, so every request of every Prefect client created inside it is recorded with its
method, path and duration. A write is any method other than GET, except the read-only POSTs of
Prefect's API (`.../filter`, `.../count`, `.../paginate`, `.../history`). The same rule
classifies the calls recorded in flow processes by `bench/_hook/sitecustomize.py`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx

READ_ONLY_POST_SUFFIXES = ("/filter", "/count", "/paginate", "/history")


def is_write(method: str, path: str) -> bool:
    if method.upper() in ("GET", "HEAD", "OPTIONS"):
        return False
    return not path.rstrip("/").endswith(READ_ONLY_POST_SUFFIXES)


@dataclass(frozen=True)
class ApiCall:
    method: str
    path: str
    status: int
    seconds: float

    @property
    def write(self) -> bool:
        return is_write(self.method, self.path)


@dataclass
class ApiCalls:
    """The calls recorded so far; thread-safe to append to."""

    calls: list[ApiCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, call: ApiCall) -> None:
        with self._lock:
            self.calls.append(call)

    @property
    def total(self) -> int:
        return len(self.calls)

    @property
    def writes(self) -> int:
        return sum(call.write for call in self.calls)

    @property
    def reads(self) -> int:
        return self.total - self.writes

    @property
    def seconds(self) -> float:
        return sum(call.seconds for call in self.calls)

    def by_endpoint(self) -> dict[str, int]:
        """Counts per 'METHOD /path' with ids replaced by '{id}'."""
        counts: dict[str, int] = {}
        for call in self.calls:
            key = f"{call.method} {normalise_path(call.path)}"
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: -item[1]))


def normalise_path(path: str) -> str:
    parts = []
    for part in path.split("/"):
        if len(part) == 36 and part.count("-") == 4:
            part = "{id}"
        parts.append(part)
    return "/".join(parts)


def _api_path(request: httpx.Request) -> str:
    path = request.url.path
    return path[path.find("/api") + 4 :] if "/api" in path else path


@contextmanager
def count_api_calls() -> Iterator[ApiCalls]:
    """Record every HTTP request made through httpx's default transports in this block."""
    recorded = ApiCalls()
    sync_handle = httpx.HTTPTransport.handle_request
    async_handle = httpx.AsyncHTTPTransport.handle_async_request

    def handle_request(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        response = sync_handle(self, request)
        recorded.record(
            ApiCall(request.method, _api_path(request), response.status_code,
                    time.perf_counter() - started)
        )
        return response

    async def handle_async_request(
        self: httpx.AsyncHTTPTransport, request: httpx.Request
    ) -> httpx.Response:
        started = time.perf_counter()
        response = await async_handle(self, request)
        recorded.record(
            ApiCall(request.method, _api_path(request), response.status_code,
                    time.perf_counter() - started)
        )
        return response

    httpx.HTTPTransport.handle_request = handle_request  # type: ignore[method-assign]
    httpx.AsyncHTTPTransport.handle_async_request = handle_async_request  # type: ignore[method-assign]
    try:
        yield recorded
    finally:
        httpx.HTTPTransport.handle_request = sync_handle  # type: ignore[method-assign]
        httpx.AsyncHTTPTransport.handle_async_request = async_handle  # type: ignore[method-assign]
