"""The Prefect server settings ConnectHub relies on, and the local server `connecthub up` starts.

`SERVER_SETTINGS` go to every Prefect server ConnectHub starts (`connecthub up`, the test
suite's server) and to the compose file's `prefect-server`:

- PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS=2 (Prefect: 30). A run that finds its
  job's concurrency limit full is rescheduled this much later, and once it gets the slot it waits
  until that time before it runs; with Prefect's 30 s, a second "Run now" of a busy job, or a
  queued scheduled run, started up to 30 s after the first ended, and runs queued behind each
  other advanced in 30 s steps. With 2 s the next run starts within about 3 s of the slot
  freeing (the worker polls every second and re-proposes waiting runs it has prefetched).
- PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED=false: ConnectHub's flow never pauses, and
  the service writes every 5 s.
- PREFECT_SERVER_SERVICES_FOREMAN_LOOP_SECONDS=60 (Prefect: 15): the foreman takes the
  database's write lock on every pass to mark silent workers offline; on SQLite every write lock
  is one more chance for Prefect's read-then-write requests (a run's labels, a worker's heartbeat)
  to fail with "database is locked" (answered 503). A dead worker is still marked offline within
  a few minutes, and ConnectHub's own heartbeat automation does not depend on it.
- PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED=events,orphans (Prefect: events): ConnectHub's
  retention deletes old flow runs through the API (deployments/retention.py); Prefect's vacuum
  then removes their logs, states and task runs, which the API delete leaves behind.
- PREFECT_SERVER_ANALYTICS_ENABLED=false: no telemetry from an operator's machine.

The embedded server keeps its database under DATA_DIR/prefect (SQLite), and is started as
`python -m deployments.server` (`server_argv`): Prefect's own `prefect server start`, with one
change on SQLite. Prefect opens its write transactions as `BEGIN DEFERRED`, so the two requests
a worker sends for every run and every poll that read, then write, in one transaction
(`READ_THEN_WRITE`: a flow run's labels when the worker submits it, the worker's heartbeat) fail
at once with "database is locked" (answered 503) whenever another write commits between their
read and their write: SQLite's busy timeout cannot help a transaction whose snapshot is already
stale. Both are idempotent, so the server answers them again itself (`retry_when_locked`: up to
RETRIES more times, a growing random pause apart, after the failed transaction has rolled back and
given its connection back) before the client ever sees a 503. Beginning them IMMEDIATE instead
(write lock first, then wait under the busy timeout) was measured and rejected: with 30-40 jobs
a minute, requests blocked in BEGIN held every connection of the server's pool while the
transaction holding the lock waited for one, and the server stalled for minutes. Measured with
40 flow runs' labels and 5 workers' heartbeats sent at once, 5 rounds: Prefect's server answered
350 of 400 with 503, this one none (tests/test_embedded_server.py). On PostgreSQL nothing
changes.
"""

from __future__ import annotations

import asyncio
import random
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

SERVER_SETTINGS = {
    "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2",
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_FOREMAN_LOOP_SECONDS": "60",
    "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,orphans",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def server_api_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/api"


def server_environment(base: dict[str, str], home: Path, port: int) -> dict[str, str]:
    """`base` plus what a Prefect server on `port` with its files under `home` needs."""
    return {
        **base,
        **SERVER_SETTINGS,
        "PREFECT_HOME": str(home.resolve()),
        "PREFECT_API_URL": server_api_url(port),
    }


def server_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "deployments.server", "--host", "127.0.0.1", "--port", str(port)]


# The requests whose transaction reads, then writes (method, path under the API); idempotent.
READ_THEN_WRITE = (
    ("PATCH", re.compile(r"/flow_runs/[^/]+/labels$")),
    ("POST", re.compile(r"/work_pools/[^/]+/workers/heartbeat$")),
)
RETRIES = 15
RETRY_PAUSE_SECONDS = 0.05  # doubling up to 32x, random below that so colliding requests spread

Asgi = Callable[[Any, Any, Any], Awaitable[None]]


def retry_when_locked(app: Asgi) -> Asgi:
    """`app`, answering a READ_THEN_WRITE request again while it answers 503."""

    async def serve(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not any(
            scope["method"] == method and path.search(scope["path"])
            for method, path in READ_THEN_WRITE
        ):
            await app(scope, receive, send)
            return
        body = b""
        while True:  # the whole (small) request body, to hand it to every attempt
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        for attempt in range(RETRIES + 1):
            if await _attempt(app, scope, body, send, last=attempt == RETRIES):
                return
            await asyncio.sleep(random.uniform(0, RETRY_PAUSE_SECONDS * 2 ** min(attempt, 5)))

    return serve


async def _attempt(app: Asgi, scope: Any, body: bytes, send: Any, last: bool) -> bool:
    """One run of the request; False (nothing sent) when it answered 503 and may run again."""
    refused = False

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def forward(message: dict[str, Any]) -> None:
        nonlocal refused
        if message["type"] == "http.response.start":
            refused = message["status"] == 503 and not last
        if not refused:
            await send(message)

    try:
        await app(dict(scope), replay, forward)  # routing writes into the scope it is given
    except Exception:
        # Starlette raises the error again once its handler has answered (the 503 held back).
        if not refused:
            raise
    return not refused


def main(argv: list[str]) -> None:
    """`prefect server start ARGV`; on SQLite, READ_THEN_WRITE requests are retried."""
    import prefect.server.api.server as prefect_server
    from prefect.cli import app
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    if PREFECT_API_DATABASE_CONNECTION_URL.value().startswith("sqlite"):
        create_app = prefect_server.create_app
        # `prefect server start` imports create_app from this module when it starts serving.
        prefect_server.create_app = lambda *args, **kwargs: retry_when_locked(
            create_app(*args, **kwargs)
        )
    sys.argv = ["prefect", "server", "start", *argv]  # Prefect's CLI reads its arguments there
    app()


if __name__ == "__main__":
    main(sys.argv[1:])
