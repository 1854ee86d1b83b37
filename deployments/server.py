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
change on SQLite. Prefect opens its write transactions as `BEGIN DEFERRED` (IMMEDIATE only where
it also locks rows), so the two requests a worker sends for every run and every poll that read,
then write, in one transaction (`READ_THEN_WRITE`: a flow run's labels when the worker submits
it, the worker's heartbeat) fail at once with "database is locked" (answered 503) whenever
another write commits between their read and their write: SQLite's busy timeout cannot help a
transaction whose snapshot is already stale. Those two requests' transactions are begun
IMMEDIATE here: they take the write lock first and wait their turn under the busy timeout
(Prefect's 60 s). Only those two: begun IMMEDIATE everywhere, requests whose transaction waits
on a second transaction of the same request stalled the server for minutes under load (40 jobs
a minute; measured), where DEFERRED fails fast and the client retries. Measured with 40 flow
runs' labels and 5 workers' heartbeats sent at once, 5 rounds: Prefect's server answered 350 of
400 with 503, this one none (tests/test_embedded_server.py). The configuration goes in through
Prefect's own seam for it (`MODELS_DEPENDENCIES["database_config"]`, which
`temporary_database_config` uses), the request marking through the app that `prefect server
start` serves; on PostgreSQL nothing changes.
"""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
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


# The requests whose transaction reads, then writes (method, path under the API).
READ_THEN_WRITE = (
    ("PATCH", re.compile(r"/flow_runs/[^/]+/labels$")),
    ("POST", re.compile(r"/work_pools/[^/]+/workers/heartbeat$")),
)
_WRITE_LOCK_FIRST: ContextVar[bool] = ContextVar("connecthub_write_lock_first", default=False)

Asgi = Callable[[Any, Any, Any], Awaitable[None]]


def immediate_sqlite_configuration(connection_url: str) -> Any:
    """Prefect's SQLite configuration, beginning IMMEDIATE the transactions of the requests
    `write_lock_first` marks."""
    from prefect.server.database.configurations import AioSqliteConfiguration

    class ImmediateSqliteConfiguration(AioSqliteConfiguration):
        @asynccontextmanager
        async def begin_transaction(
            self, session: Any, with_for_update: bool = False
        ) -> AsyncIterator[Any]:
            immediate = with_for_update or _WRITE_LOCK_FIRST.get()
            async with super().begin_transaction(session, immediate) as transaction:
                yield transaction

    return ImmediateSqliteConfiguration(connection_url=connection_url)


def write_lock_first(app: Asgi) -> Asgi:
    """`app`, with the READ_THEN_WRITE requests marked for an IMMEDIATE transaction."""

    async def marked(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and any(
            scope["method"] == method and path.search(scope["path"])
            for method, path in READ_THEN_WRITE
        ):
            token = _WRITE_LOCK_FIRST.set(True)  # the request's own task and what it awaits
            try:
                await app(scope, receive, send)
            finally:
                _WRITE_LOCK_FIRST.reset(token)
        else:
            await app(scope, receive, send)

    return marked


def main(argv: list[str]) -> None:
    """`prefect server start ARGV`; on SQLite, READ_THEN_WRITE requests lock first."""
    import prefect.server.api.server as prefect_server
    from prefect.cli import app
    from prefect.server.database.dependencies import MODELS_DEPENDENCIES
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    connection_url = PREFECT_API_DATABASE_CONNECTION_URL.value()
    if connection_url.startswith("sqlite"):
        MODELS_DEPENDENCIES["database_config"] = immediate_sqlite_configuration(connection_url)
        create_app = prefect_server.create_app
        # `prefect server start` imports create_app from this module when it starts serving.
        prefect_server.create_app = lambda *args, **kwargs: write_lock_first(
            create_app(*args, **kwargs)
        )
    sys.argv = ["prefect", "server", "start", *argv]  # Prefect's CLI reads its arguments there
    app()


if __name__ == "__main__":
    main(sys.argv[1:])
