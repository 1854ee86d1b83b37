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
- PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE=15 and ..._MAX_OVERFLOW=0 (Prefect: 5 and 10):
  the server still opens at most 15 database connections, and now keeps them. A few runs in
  flight already need more than five at once (their requests, the event services, the workers'
  polls), and each connection over five was closed when it was returned: on PostgreSQL 3.6 new
  connections per run at 70 runs a minute, each a new backend process and login, and asyncpg's
  type introspection and statement preparation all over again. Prefect applies these two to
  PostgreSQL only; on SQLite the configuration below keeps the same 15.
- PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_TIMEOUT=90 (Prefect: 30): a request that waits for
  one of those connections waits longer than its client waits for the answer (Prefect's clients:
  PREFECT_API_REQUEST_TIMEOUT, 60 s), and a client that gives up retries. When 100 runs fired
  in the same minute on two cores, requests waited over 30 s for a connection, and Prefect
  answered them 500, which its clients do not retry: a run's `GET /deployments/{id}` failed so,
  and the run crashed before its body. The timeout applies to SQLite's pool too.

The embedded server keeps its database under DATA_DIR/prefect (SQLite), and is started as
`python -m deployments.server` (`server_argv`): Prefect's own `prefect server start` with three
changes that apply on SQLite only (on PostgreSQL nothing changes):

- Websockets are not counted in Prefect's limit of 100 concurrent requests (`HttpRequestLimit`).
  Prefect limits requests on SQLite to spare the database, but its middleware also counts every
  open websocket, for as long as it stays open, and every flow run holds three for its whole
  life (its events going in, and the cancellation and suspension observers' event streams).
  With about 33 runs in flight the limit was taken by websockets alone and every HTTP request
  waited for a slot that only those runs' ends would free, which needed HTTP requests: the server
  stopped answering for good (40 jobs on `* * * * *`: 219 requests waiting, 98 websockets
  holding the slots; nothing completed). Websockets do not write to the database; HTTP requests
  are still limited to 100.
- Write transactions queue for one turn each (`SerializedSqliteConfiguration`). Prefect begins
  them DEFERRED, so one that reads, then writes (a flow run's labels when a worker submits it, a
  worker's heartbeat) fails at once with "database is locked" (answered 503) whenever another
  write commits between its read and its write: SQLite's busy timeout cannot help a transaction
  whose snapshot is already stale. SQLite has one writer at a time whatever the server does, so
  each write transaction waits its turn on one asyncio lock, before it takes a pooled
  connection, then begins IMMEDIATE: none is refused, a waiting request holds no connection, and
  turns pass in order without SQLite's polling sleeps. Reads outside a transaction are untouched
  and WAL lets them run beside the writer. Measured by tests/test_embedded_server.py: a burst of
  400 label updates and worker heartbeats got 350 503s from Prefect's own server, none here.
- Its pool keeps its 15 connections (`kept_connections_pool`), as the settings above do on
  PostgreSQL: a SQLite connection closed after a burst took its thread and its page cache with it.

The configuration goes in through Prefect's seam for it (`MODELS_DEPENDENCIES["database_config"]`,
as Prefect's `temporary_database_config` uses); the middleware has no seam, so the module's class
is replaced before `prefect server start` builds the app.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

# The database connections a server keeps open, and the most it opens (Prefect: 5 and 15).
KEPT_CONNECTIONS = 15
# How long a request waits for one of them (Prefect: 30 s; its clients wait 60 s, then retry).
POOL_TIMEOUT_SECONDS = 90

SERVER_SETTINGS = {
    "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2",
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_FOREMAN_LOOP_SECONDS": "60",
    "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,orphans",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": str(KEPT_CONNECTIONS),
    "PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW": "0",
    "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_TIMEOUT": str(POOL_TIMEOUT_SECONDS),
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


# Set while this task's write transaction holds its loop's turn: a transaction begun inside it
# (Prefect does not nest them, but a deadlock on the queue would stall the server) goes ahead.
_HOLDS_TURN: ContextVar[bool] = ContextVar("connecthub_sqlite_holds_turn", default=False)


def serialized_sqlite_configuration(connection_url: str) -> Any:
    """Prefect's SQLite configuration whose write transactions queue for one turn each."""
    from prefect.server.database.configurations import AioSqliteConfiguration

    class SerializedSqliteConfiguration(AioSqliteConfiguration):
        # One queue per event loop, as Prefect keeps one engine per event loop.
        turns: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

        async def engine(self) -> Any:
            engine = await super().engine()
            pool = engine.sync_engine.pool
            # A new engine (no connection opened yet); an in-memory database keeps its one.
            if pool.size() != KEPT_CONNECTIONS and not self.is_inmemory():
                engine.sync_engine.pool = kept_connections_pool(pool)
            return engine

        @asynccontextmanager
        async def begin_transaction(
            self, session: Any, with_for_update: bool = False
        ) -> AsyncIterator[Any]:
            if _HOLDS_TURN.get():
                async with super().begin_transaction(session, with_for_update=True) as tx:
                    yield tx
                return
            turn = self.turns.setdefault(asyncio.get_running_loop(), asyncio.Lock())
            async with turn:
                token = _HOLDS_TURN.set(True)
                try:
                    async with super().begin_transaction(session, with_for_update=True) as tx:
                        yield tx
                finally:
                    _HOLDS_TURN.reset(token)

    return SerializedSqliteConfiguration(connection_url=connection_url)


def kept_connections_pool(pool: Any) -> Any:
    """`pool`'s class, connector and listeners, keeping KEPT_CONNECTIONS and opening no more,
    with POOL_TIMEOUT_SECONDS.

    Prefect sizes only PostgreSQL's pool from its settings; a SQLite engine gets SQLAlchemy's
    default (5 kept, 10 more closed when returned, 30 s). This is what `Pool.recreate()` builds,
    with another size and timeout."""
    return type(pool)(
        pool._creator,
        pool_size=KEPT_CONNECTIONS,
        max_overflow=0,
        timeout=POOL_TIMEOUT_SECONDS,
        recycle=pool._recycle,
        pre_ping=pool._pre_ping,
        reset_on_return=pool._reset_on_return,
        echo=pool.echo,
        logging_name=pool._orig_logging_name,
        _dispatch=pool.dispatch,
        dialect=pool._dialect,
    )


def http_request_limit() -> type:
    """Prefect's limit of concurrent requests on SQLite, counting HTTP requests only."""
    from prefect.server.api.server import RequestLimitMiddleware

    class HttpRequestLimit(RequestLimitMiddleware):
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                await super().__call__(scope, receive, send)
            else:
                await self.app(scope, receive, send)

    return HttpRequestLimit


def main(argv: list[str]) -> None:
    """`prefect server start ARGV`, with the two changes above on SQLite."""
    from prefect.cli import app
    from prefect.server.api import server as api_server
    from prefect.server.database.dependencies import MODELS_DEPENDENCIES
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    connection_url = PREFECT_API_DATABASE_CONNECTION_URL.value()
    if connection_url.startswith("sqlite"):
        MODELS_DEPENDENCIES["database_config"] = serialized_sqlite_configuration(connection_url)
        api_server.RequestLimitMiddleware = http_request_limit()
    sys.argv = ["prefect", "server", "start", *argv]  # Prefect's CLI reads its arguments there
    app()


if __name__ == "__main__":
    main(sys.argv[1:])
