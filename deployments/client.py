"""The Prefect API client ConnectHub uses, and the names it shares with Prefect.

Every call to the Prefect API goes through `prefect_client()`, which connects to
PREFECT_API_URL from ConnectHub's settings (with its auth string, when the server requires one)
and turns "Prefect cannot be reached" into
`PrefectUnavailableError`, so callers can record the failure and let the sync loop catch up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx
from prefect.client.orchestration import SyncPrefectClient
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.settings import PREFECT_API_KEY

from connecthub.core.config import DEFAULT_PREFECT_PORT, get_settings
from deployments.errors import EngineError, PrefectUnavailableError, RunRefusedError

__all__ = ["EngineError", "PrefectUnavailableError", "RunRefusedError", "prefect_client"]

# A module path, not a file: a run imports the flow as a module, which a forked run process has
# imported already (a file path made Prefect execute the file again in every run).
ENTRYPOINT = "flows.execute_job.execute_job"
# The directory that holds flows/: a process worker imports the entrypoint from there.
CODE_DIR = Path(__file__).resolve().parents[1]
REQUEST_TIMEOUT_SECONDS = 15.0
T = TypeVar("T")


def _unavailable(api_url: str, error: Exception) -> PrefectUnavailableError:
    reason = type(error).__name__
    if isinstance(error, PrefectHTTPStatusError):
        reason = f"HTTP {error.response.status_code}"
    return PrefectUnavailableError(f"Prefect is not reachable at {api_url} ({reason})")


@contextmanager
def prefect_client() -> Iterator[SyncPrefectClient]:
    """A sync Prefect client for PREFECT_API_URL; `PrefectUnavailableError` when it is down."""
    settings = get_settings()
    api_url = settings.prefect_api_url
    if not api_url:
        raise PrefectUnavailableError(
            "PREFECT_API_URL is not set: point it at the Prefect server's API (the one "
            f"`connecthub up` starts answers at http://127.0.0.1:{DEFAULT_PREFECT_PORT}/api)"
        )
    client = SyncPrefectClient(
        api_url,
        api_key=PREFECT_API_KEY.value(),
        auth_string=settings.prefect_auth_string,
        httpx_settings={"timeout": REQUEST_TIMEOUT_SECONDS},
    )
    try:
        with client:
            yield client
    except (httpx.TransportError, ConnectionError) as error:
        raise _unavailable(api_url, error) from None
    except PrefectHTTPStatusError as error:
        if error.response.status_code >= 500:
            raise _unavailable(api_url, error) from None
        raise
    except RuntimeError as error:
        # The client raises RuntimeError when its startup health check cannot connect.
        if "connect" in str(error).lower():
            raise _unavailable(api_url, error) from None
        raise


def read_or_none(read: Callable[[], T]) -> T | None:
    """`read()`, or None when Prefect answers that the object does not exist."""
    try:
        return read()
    except ObjectNotFound:
        return None
    except PrefectHTTPStatusError as error:
        if error.response.status_code == 404:
            return None
        raise
