"""`BaseClient`: the one way a ConnectHub job talks HTTP to an outside system.

A client owns, for one remote API: the base URL, the default headers (its credentials among
them, e.g. `auth_header(token)`), the timeouts (`Timeout`), the retries (`RetryPolicy`), a log
line per attempt, and turning every failure into a `ClientError`. Jobs build a client and call
its methods; they never touch httpx themselves.

    class BillingClient(BaseClient):
        def __init__(self, base_url: str, token: str, **options: Any) -> None:
            super().__init__(base_url, headers=auth_header(token), **options)

        def invoice(self, number: str) -> dict[str, Any]:
            return self.get_json(f"/invoices/{number}")

Each attempt logs one line on `connecthub.client.<ClassName>`:

    GET https://api.example.com/v1/items?api_key=*** -> 503 Service Unavailable in 41ms \
(attempt 1/3); retrying in 0.37s

Headers are never logged. URLs are logged and raised with secret-looking query values replaced
by `***`, and every logged or raised string has the job's registered secrets and the request's
own credentials removed (see `_redact`). For the same reason httpx's own "HTTP Request: ..."
log lines get their URLs redacted too.

A response with status >= 400 raises `HTTPStatusError` (or `RetriesExhausted` once retrying a
retryable one has run out of attempts); `request` therefore only ever returns success or 1xx/3xx
responses. Redirects are not followed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from connecthub import __version__
from connecthub.integrations._config import RetryPolicy, Timeout
from connecthub.integrations._errors import (
    ClientError,
    ConnectError,
    ConnectTimeout,
    HTTPStatusError,
    PoolTimeout,
    ReadTimeout,
    ResponseDecodeError,
    RetriesExhausted,
    TransportError,
    WriteTimeout,
)
from connecthub.integrations._redact import Redactor, redact_url, redact_urls_in

__all__ = ["BaseClient", "auth_header"]

USER_AGENT = f"connecthub/{__version__}"
# How much of an error response's body an HTTPStatusError shows the operator.
DETAIL_CHARS = 200

# httpx errors after which the request certainly did not reach the remote: safe to retry
# whatever the method. Order matters: ConnectError before its base class NetworkError.
_NOT_SENT: tuple[tuple[type[httpx.TransportError], type[TransportError]], ...] = (
    (httpx.ConnectTimeout, ConnectTimeout),
    (httpx.PoolTimeout, PoolTimeout),
    (httpx.ConnectError, ConnectError),
)
# httpx errors after which the remote may have acted: retried for idempotent methods only.
_MAYBE_SENT: tuple[tuple[type[httpx.TransportError], type[TransportError]], ...] = (
    (httpx.ReadTimeout, ReadTimeout),
    (httpx.WriteTimeout, WriteTimeout),
    (httpx.NetworkError, TransportError),  # connection dropped mid-request
    (httpx.RemoteProtocolError, TransportError),  # e.g. closed without a response
)

_STATUS_HINTS = (
    ((401, 403), "the credentials were refused: check the job's secrets"),
    ((404,), "check the base URL and the path"),
    ((429,), "the remote is rate limiting: run the job less often or raise max_delay"),
)


def auth_header(token: str, scheme: str = "Bearer") -> dict[str, str]:
    """`{"Authorization": "<scheme> <token>"}`, for a client's default headers."""
    if not token or not token.strip():
        raise ValueError("the auth token is empty: check the job's secrets")
    if any(char.isspace() or not char.isprintable() for char in token):
        # Never echo the token: it is the secret.
        raise ValueError("the auth token contains whitespace or control characters")
    return {"Authorization": f"{scheme} {token}"}


class _RedactHttpxURLs(logging.Filter):
    """Redacts the URL in httpx's own "HTTP Request: GET <url> ..." records."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call keeps its own error path
            return True
        record.msg, record.args = redact_urls_in(message), None
        return True


_httpx_filter_lock = threading.Lock()
_httpx_filter_installed = False


def _install_httpx_log_redaction() -> None:
    global _httpx_filter_installed
    with _httpx_filter_lock:
        if not _httpx_filter_installed:
            logging.getLogger("httpx").addFilter(_RedactHttpxURLs())
            _httpx_filter_installed = True


def _status_hint(status: int) -> str:
    for statuses, hint in _STATUS_HINTS:
        if status in statuses:
            return hint
    if status >= 500:
        return "the remote failed: try again later or ask its operators"
    return "the remote rejected the request: check the job's params"


def _detail(response: httpx.Response, redactor: Redactor) -> str:
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith(("text/", "application/json", "application/problem+json")):
        return ""
    try:
        text = " ".join(response.text.split())
    except Exception:  # an undecodable body is not worth failing the error for
        return ""
    return redactor.text(text)[:DETAIL_CHARS]


class BaseClient:
    """An HTTP client for one remote API, with timeouts, retries, logging and typed errors.

    `transport` replaces the network (e.g. `httpx.MockTransport` in tests); `sleep` replaces
    `time.sleep` between attempts.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: Timeout = Timeout(),
        retry: RetryPolicy = RetryPolicy(),
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(
                f"base URL {redact_url(base_url)!r} is not an http(s) URL, "
                "e.g. https://api.example.com/v1"
            )
        self.timeout = timeout
        self.retry = retry
        self.logger = logging.getLogger(f"connecthub.client.{type(self).__name__}")
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=url,
            headers={"User-Agent": USER_AGENT, **(headers or {})},
            timeout=timeout.to_httpx(),
            transport=transport,
            follow_redirects=False,
        )
        _install_httpx_log_redaction()

    @property
    def base_url(self) -> str:
        return str(self._http.base_url)

    @property
    def is_closed(self) -> bool:
        return self._http.is_closed

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | str | None = None,
        data: Mapping[str, Any] | None = None,
        files: Any = None,
        timeout: Timeout | None = None,
    ) -> httpx.Response:
        """Send `method` to `path` (relative to the base URL), retrying per `self.retry`.

        Returns the response if its status is below 400. Raises `HTTPStatusError`,
        a `TransportError`, or `RetriesExhausted` after the last retryable failure.
        """
        if self._http.is_closed:
            raise RuntimeError(f"{type(self).__name__} is closed; create a new client")
        request = self._http.build_request(
            method.upper(),
            path,
            params=params,
            headers=headers,
            json=json,
            content=content,
            data=data,
            files=files,
            timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout.to_httpx(),
        )
        redactor = Redactor.for_request(request)
        self._check_origin(request, redactor)
        method, url = request.method, redactor.url(request.url)
        # A body given as an iterator or file is consumed by the first attempt.
        attempts = self.retry.max_attempts if isinstance(request.stream, httpx.ByteStream) else 1

        for attempt in range(1, attempts + 1):
            started = time.perf_counter()
            response, error, retryable = self._send_once(request, method, url, redactor)
            elapsed_ms = round((time.perf_counter() - started) * 1000)
            delay = None
            if retryable and attempt < attempts:
                retry_after = response.headers.get("Retry-After") if response is not None else None
                delay = self.retry.delay(attempt, retry_after)
            self._log_attempt(
                f"{method} {url}", response, error, elapsed_ms, (attempt, attempts),
                delay=delay, retryable=retryable, redactor=redactor,
            )
            if error is None:
                assert response is not None
                return response
            if delay is None:
                if retryable and attempts > 1:
                    raise RetriesExhausted(
                        f"gave up after {attempts} attempts: {error}",
                        method=method,
                        url=url,
                        attempts=attempts,
                        last_error=error,
                    ) from error
                raise error from None  # never chain httpx errors: they hold the request headers
            self._sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _log_attempt(
        self,
        target: str,
        response: httpx.Response | None,
        error: Exception | None,
        elapsed_ms: int,
        attempt_of: tuple[int, int],
        *,
        delay: float | None,
        retryable: bool,
        redactor: Redactor,
    ) -> None:
        """The one log line of an attempt: outcome, time, and what happens next."""
        attempt, attempts = attempt_of
        if response is not None:
            outcome = redactor.text(f"{response.status_code} {response.reason_phrase}".strip())
        else:
            outcome = type(error).__name__
        if error is None:
            level, tail = logging.INFO, ""
        elif delay is not None:
            level, tail = logging.WARNING, f"; retrying in {delay:.2f}s"
        else:
            level, tail = logging.WARNING, "; giving up" if retryable and attempts > 1 else ""
        self.logger.log(
            level, "%s -> %s in %dms (attempt %d/%d)%s",
            target, outcome, elapsed_ms, attempt, attempts, tail,
        )

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def get_json(self, path: str, **kwargs: Any) -> Any:
        """GET `path` and return its JSON body; `ResponseDecodeError` if it is not JSON."""
        response = self.request("GET", path, **kwargs)
        try:
            return response.json()
        except ValueError:
            redactor = Redactor.for_request(response.request)
            url = redactor.url(response.request.url)
            content_type = response.headers.get("content-type", "no content type")
            raise ResponseDecodeError(
                f"GET {url} returned {response.status_code} with a body that is not JSON "
                f"({redactor.text(content_type)}): check the base URL",
                method="GET",
                url=url,
            ) from None

    def _send_once(
        self, request: httpx.Request, method: str, url: str, redactor: Redactor
    ) -> tuple[httpx.Response | None, ClientError | None, bool]:
        """One attempt: the response if any, the error if it failed, and whether to retry."""
        try:
            response = self._http.send(request)
        except httpx.TransportError as exc:
            error, retryable = self._transport_error(exc, method, url, redactor)
            return None, error, retryable
        except httpx.RequestError as exc:  # e.g. an undecodable gzip body
            error = ResponseDecodeError(
                f"{method} {url}: the response could not be read "
                f"({type(exc).__name__}: {redactor.text(str(exc))})",
                method=method,
                url=url,
            )
            return None, error, False
        status_error = self._status_error(response, method, url, redactor)
        retryable = status_error is not None and (
            method in self.retry.methods and response.status_code in self.retry.statuses
        )
        return response, status_error, retryable

    def _check_origin(self, request: httpx.Request, redactor: Redactor) -> None:
        # An absolute URL elsewhere would carry this client's credentials to another host.
        base = self._http.base_url
        target = request.url
        if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
            raise ValueError(
                f"{redactor.url(target)} is not on this client's base URL "
                f"{redactor.url(base)}; use a client made for that host"
            )

    def _transport_error(
        self, exc: httpx.TransportError, method: str, url: str, redactor: Redactor
    ) -> tuple[TransportError, bool]:
        """Our error for `exc`, and whether the policy allows another attempt after it."""
        error_type: type[TransportError] = TransportError
        retryable = False
        for httpx_type, ours in _NOT_SENT:
            if isinstance(exc, httpx_type):
                error_type, retryable = ours, True
                break
        else:
            for httpx_type, ours in _MAYBE_SENT:
                if isinstance(exc, httpx_type):
                    error_type, retryable = ours, method in self.retry.methods
                    break
        reason = redactor.text(str(exc)) or "no detail"
        error = error_type(
            f"{method} {url} failed: {type(exc).__name__}: {reason}", method=method, url=url
        )
        return error, retryable

    def _status_error(
        self, response: httpx.Response, method: str, url: str, redactor: Redactor
    ) -> HTTPStatusError | None:
        status = response.status_code
        if status < 400:
            return None
        reason = redactor.text(response.reason_phrase)
        detail = _detail(response, redactor)
        message = f"{method} {url} returned {status} {reason}: {_status_hint(status)}"
        if detail:
            message += f". The remote said: {detail}"
        return HTTPStatusError(
            message, method=method, url=url, status_code=status, reason=reason, detail=detail
        )
