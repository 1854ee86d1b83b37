"""The errors `BaseClient` raises, and nothing else it raises:

* ClientError                 anything that went wrong talking to a remote system
  + TransportError            no usable response (the request may or may not have arrived)
    - ConnectError            could not connect: refused, DNS, TLS. Nothing was sent.
    - RequestTimeout
      · ConnectTimeout        no connection in time. Nothing was sent.
      · ReadTimeout           the remote did not answer in time
      · WriteTimeout          the request body could not be sent in time
      · PoolTimeout           no free connection in time. Nothing was sent.
  + HTTPStatusError           the remote answered 4xx or 5xx
  + ResponseDecodeError       the remote answered, but not with what was expected (e.g. JSON)
  + RetriesExhausted          every attempt failed with a retryable error; see `last_error`

Every error carries the request's `method` and its `url`, redacted as in the client's log lines
(secret-looking query values replaced by `***`, registered secrets masked). No error holds the
request or response object: those keep the request headers, and so the Authorization value.
Keyword arguments have defaults so that errors survive pickling (Prefect stores them).
"""

from __future__ import annotations

__all__ = [
    "ClientError",
    "ConnectError",
    "ConnectTimeout",
    "HTTPStatusError",
    "PoolTimeout",
    "ReadTimeout",
    "RequestTimeout",
    "ResponseDecodeError",
    "RetriesExhausted",
    "TransportError",
    "WriteTimeout",
]


class ClientError(Exception):
    """Base class of every error raised by a `BaseClient`."""

    def __init__(self, message: str, *, method: str = "", url: str = "") -> None:
        super().__init__(message)
        self.method = method
        self.url = url


class TransportError(ClientError):
    """No usable HTTP response was received."""


class ConnectError(TransportError):
    """The connection could not be made; the request was not sent."""


class RequestTimeout(TransportError):
    """A timeout of the client's `Timeout` expired."""


class ConnectTimeout(RequestTimeout):
    """No connection within `Timeout.connect`; the request was not sent."""


class ReadTimeout(RequestTimeout):
    """No response within `Timeout.read`; the remote may have acted on the request."""


class WriteTimeout(RequestTimeout):
    """The request could not be sent within `Timeout.write`."""


class PoolTimeout(RequestTimeout):
    """No connection free within `Timeout.pool`; the request was not sent."""


class HTTPStatusError(ClientError):
    """The remote answered with a 4xx or 5xx status.

    `detail` is the start of the response body, masked, for the operator to read.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        url: str = "",
        status_code: int = 0,
        reason: str = "",
        detail: str = "",
    ) -> None:
        super().__init__(message, method=method, url=url)
        self.status_code = status_code
        self.reason = reason
        self.detail = detail


class ResponseDecodeError(ClientError):
    """The response body could not be decoded as expected."""


class RetriesExhausted(ClientError):
    """Every attempt allowed by the `RetryPolicy` failed with a retryable error.

    `last_error` (also the `__cause__`) is the failure of the final attempt: a `TransportError`
    or an `HTTPStatusError`.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        url: str = "",
        attempts: int = 0,
        last_error: ClientError | None = None,
    ) -> None:
        super().__init__(message, method=method, url=url)
        self.attempts = attempts
        self.last_error = last_error

    @property
    def status_code(self) -> int | None:
        """The status of the final attempt, or None when it got no response."""
        if isinstance(self.last_error, HTTPStatusError):
            return self.last_error.status_code
        return None
