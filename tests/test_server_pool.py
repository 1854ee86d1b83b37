"""The Prefect server ConnectHub starts keeps its PostgreSQL connections under load.

With Prefect's pool (5 kept, 10 more opened when needed and closed when returned), every burst
of requests opened and closed PostgreSQL backends; `SERVER_SETTINGS` keep all 15. The test
watches the server's backends in pg_stat_activity while bursts of concurrent API requests run:
after a first burst has opened the pool, no later burst may open a new one.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
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


@pytest.fixture
def server_on_own_database(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A ConnectHub-configured Prefect server alone on a new database: (API URL, database)."""
    name = f"prefect_pool_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    create_pg_database(name)
    port = free_port()
    process = start_prefect_server(tmp_path / "prefect", port, pg_url(name, driver="asyncpg"))
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        wait_http(f"{api_url}/health", SERVER_START_TIMEOUT, process)
        yield api_url, name
    finally:
        stop_process(process)
        drop_pg_database(name)


def _backends(database: str) -> set[int]:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)
        ).fetchall()
    return {pid for (pid,) in rows}


async def _burst(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as client:
        responses = await asyncio.gather(
            *(client.post("/flow_runs/filter", json={"limit": 50}) for _ in range(BURST))
        )
    assert all(response.status_code == 200 for response in responses)


def test_bursts_of_requests_open_no_new_database_connections(
    server_on_own_database: tuple[str, str],
) -> None:
    api_url, database = server_on_own_database
    asyncio.run(_burst(api_url))  # opens the pool
    kept = _backends(database)
    assert kept

    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:  # an opened-and-closed backend lives for a burst: sample often
        while not stop.is_set():
            seen.update(_backends(database))
            stop.wait(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(5):
            asyncio.run(_burst(api_url))
    finally:
        stop.set()
        watcher.join()
    seen.update(_backends(database))
    assert seen - kept == set(), f"{len(seen - kept)} backends opened after the first burst"
