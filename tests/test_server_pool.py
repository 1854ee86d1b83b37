"""The Prefect server ConnectHub starts keeps its database connections under load, and a request
waits for one of them as long as its client waits for the answer.

With Prefect's pool (5 kept, 10 more opened when needed and closed when returned), every burst
of requests opened and closed connections: PostgreSQL backends, or SQLite connections with their
thread and an empty page cache. ConnectHub's server keeps all 15. The test watches the server's
connections while bursts of concurrent API requests run (PostgreSQL: its backends in
pg_stat_activity; SQLite: the server's threads, as each aiosqlite connection runs in a thread of
its own): every connection a burst opened is still open after the bursts. Then requests wait
over 30 s (Prefect's pool timeout, which answered them 500) for a connection, and are answered.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from deployments.server import (
    KEPT_CONNECTIONS,
    POOL_TIMEOUT_SECONDS,
    serialized_sqlite_configuration,
)
from tests.support.pg import PG_ADMIN_URL
from tests.support.processes import (
    SERVER_START_TIMEOUT,
    free_port,
    prefect_server_on_postgres,
    start_prefect_server,
    stop_process,
    wait_http,
)

BURST = 60  # concurrent requests: well over the 15 connections a pool may hold


def _pg_backends(database: str) -> Callable[[], set[int]]:
    def backends() -> set[int]:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)
            ).fetchall()
        return {pid for (pid,) in rows}

    return backends


def _threads(process: subprocess.Popen[bytes]) -> Callable[[], set[int]]:
    def threads() -> set[int]:
        try:
            return {int(tid) for tid in os.listdir(f"/proc/{process.pid}/task")}
        except FileNotFoundError:  # the server died: the test fails on its requests
            return set()

    return threads


@pytest.fixture(params=["postgresql", "sqlite"])
def server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, Callable[[], set[int]]]]:
    """A ConnectHub-configured Prefect server alone on a new database: its API URL, and what
    identifies its open database connections."""
    name = f"prefect_pool_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    if request.param == "postgresql":
        with prefect_server_on_postgres(tmp_path / "prefect", name) as api_url:
            yield api_url, _pg_backends(name)
        return
    port = free_port()
    url = f"sqlite+aiosqlite:///{(tmp_path / f'{name}.db').resolve()}"
    process = start_prefect_server(tmp_path / "prefect", port, url)
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        wait_http(f"{api_url}/health", SERVER_START_TIMEOUT, process)
        yield api_url, _threads(process)
    finally:
        stop_process(process)


async def _burst(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as client:
        responses = await asyncio.gather(
            *(client.post("/flow_runs/filter", json={"limit": 50}) for _ in range(BURST))
        )
    assert all(response.status_code == 200 for response in responses)


def test_the_connections_bursts_open_stay_open(
    server: tuple[str, Callable[[], set[int]]],
) -> None:
    api_url, connections = server
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:  # a connection opened and closed lives for part of a burst
        while not stop.is_set():
            seen.update(connections())
            stop.wait(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(5):
            asyncio.run(_burst(api_url))
    finally:
        stop.set()
        watcher.join()
    closed = seen - connections()
    assert seen and closed == set(), f"{len(closed)} of {len(seen)} closed after the bursts"


PREFECT_POOL_TIMEOUT_SECONDS = 30


@pytest.fixture
def pg_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A ConnectHub-configured Prefect server on a new PostgreSQL database: its API URL and the
    database's name. Its statement timeout (Prefect: 10 s) is raised so that a query may wait on
    a lock for longer than the pool timeout."""
    name = f"prefect_wait_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with prefect_server_on_postgres(tmp_path / "prefect", name,
                                    PREFECT_SERVER_DATABASE_TIMEOUT="120") as api_url:
        yield api_url, name


def test_a_request_waits_for_a_connection_longer_than_prefects_pool_timeout(
    pg_server: tuple[str, str],
) -> None:
    """Every connection is held by a request blocked on a lock, so that further requests wait
    for the pool, for longer than Prefect's 30 s; when the lock goes, every request is answered
    (with Prefect's timeout, those that waited for the pool were answered 500)."""
    api_url, database = pg_server
    assert POOL_TIMEOUT_SECONDS > PREFECT_POOL_TIMEOUT_SECONDS
    requests = KEPT_CONNECTIONS + 10

    async def filter_runs() -> list[int]:
        async with httpx.AsyncClient(base_url=api_url, timeout=POOL_TIMEOUT_SECONDS) as client:
            responses = await asyncio.gather(
                *(client.post("/flow_runs/filter", json={"limit": 1}) for _ in range(requests))
            )
        return [response.status_code for response in responses]

    def blocked_on_lock() -> int:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                " AND wait_event_type = 'Lock'", (database,)
            ).fetchone()
        return count

    statuses: list[int] = []
    with psycopg.connect(f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{database}") as lock:
        lock.execute("LOCK TABLE flow_run IN ACCESS EXCLUSIVE MODE")
        caller = threading.Thread(target=lambda: statuses.extend(asyncio.run(filter_runs())))
        caller.start()
        deadline = time.monotonic() + 30
        while blocked_on_lock() < KEPT_CONNECTIONS:  # every connection is taken
            assert caller.is_alive() and time.monotonic() < deadline, "the pool was not filled"
            time.sleep(0.1)
        exhausted = time.monotonic()
        # The requests beyond the pool's connections now wait for one: past Prefect's timeout.
        while time.monotonic() < exhausted + PREFECT_POOL_TIMEOUT_SECONDS + 3:
            assert caller.is_alive()
            time.sleep(0.5)
        lock.rollback()
    caller.join()
    assert statuses == [200] * requests


def test_the_embedded_servers_sqlite_pool_waits_as_long(tmp_path: Path) -> None:
    """SQLite's pool, which Prefect leaves at SQLAlchemy's defaults, gets the same size and
    timeout as PostgreSQL's from the settings above."""
    configuration = serialized_sqlite_configuration(
        f"sqlite+aiosqlite:///{(tmp_path / 'prefect.db').resolve()}"
    )

    async def pool() -> Any:
        engine = await configuration.engine()
        try:
            return engine.sync_engine.pool
        finally:
            await engine.dispose()

    built = asyncio.run(pool())
    assert (built.size(), built.timeout()) == (KEPT_CONNECTIONS, POOL_TIMEOUT_SECONDS)
