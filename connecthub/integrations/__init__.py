"""How ConnectHub jobs reach outside systems: `BaseClient` and what configures and fails it.

A job's client subclasses `BaseClient`, which owns the base URL, credentials in default headers,
`Timeout`, `RetryPolicy`, one redacted log line per attempt, and the `ClientError` tree.
"""

from connecthub.integrations._config import IDEMPOTENT_METHODS, RETRY_STATUSES, RetryPolicy, Timeout
from connecthub.integrations._errors import (
    ClientError,
    ConnectError,
    ConnectTimeout,
    HTTPStatusError,
    PoolTimeout,
    ReadTimeout,
    RequestTimeout,
    ResponseDecodeError,
    RetriesExhausted,
    TransportError,
    WriteTimeout,
)
from connecthub.integrations._redact import redact_url
from connecthub.integrations.base import BaseClient, auth_header

__all__ = [
    "IDEMPOTENT_METHODS",
    "RETRY_STATUSES",
    "BaseClient",
    "ClientError",
    "ConnectError",
    "ConnectTimeout",
    "HTTPStatusError",
    "PoolTimeout",
    "ReadTimeout",
    "RequestTimeout",
    "ResponseDecodeError",
    "RetriesExhausted",
    "RetryPolicy",
    "Timeout",
    "TransportError",
    "WriteTimeout",
    "auth_header",
    "redact_url",
]
