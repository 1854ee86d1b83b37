"""The Prefect server ConnectHub starts keeps its database connections under load.

With Prefect's pool (5 kept, 10 more opened when needed and closed when returned), every burst
of requests opened and closed connections: PostgreSQL backends, or SQLite connections with their
thread and an empty page cache. ConnectHub's server keeps all 15. The test watches the server's
connections while bursts of concurrent API requests run (PostgreSQL: its backends in
pg_stat_activity; SQLite: the server's threads, as each aiosqlite connection runs in a thread of
its own): every connection a burst opened is still open after the bursts.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.pg import PG_ADMIN_URL, create_pg_database, drop_pg_database, pg_url
from tests.support.processes import (
    SERVER_START_TIMEOUT,
    free_port,
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
    port = free_port()
    name = f"prefect_pool_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    if request.param == "postgresql":
        create_pg_database(name)
        url = pg_url(name, driver="asyncpg")
    else:
        url = f"sqlite+aiosqlite:///{(tmp_path / f'{name}.db').resolve()}"
    process = start_prefect_server(tmp_path / "prefect", port, url)
    api_url = f"http://127.0.0.1:{port}/api"
    connections = _pg_backends(name) if request.param == "postgresql" else _threads(process)
    try:
        wait_http(f"{api_url}/health", SERVER_START_TIMEOUT, process)
        yield api_url, connections
    finally:
        stop_process(process)
        if request.param == "postgresql":
            drop_pg_database(name)


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
