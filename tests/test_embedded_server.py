"""The embedded Prefect server on SQLite (`python -m deployments.server`, what `connecthub up`
and the tests start) against Prefect's own `prefect server start`, both real processes on a
fresh SQLite database each:

- a burst of read-then-write requests (flow-run label updates, what a worker sends when it
  submits a run, and worker heartbeats): Prefect's server refuses part of it with 503 ("database
  is locked"), the embedded one answers every one;
- more open websockets than Prefect's limit of 100 concurrent requests on SQLite (every flow run
  holds three): Prefect's server stops answering HTTP, the embedded one answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from deployments.server import server_api_url, server_environment
from tests.support.processes import (
    SERVER_START_TIMEOUT,
    free_port,
    start_prefect_server,
    stop_process,
    wait_http,
)

RUNS = 40
WORKERS = 5
ROUNDS = 5
# Prefect's RequestLimitMiddleware admits 100 concurrent requests on SQLite.
WEBSOCKETS = 105


async def _ready(client: httpx.AsyncClient, path: str, body: dict) -> dict:
    """POST `body`, again while a just-started server's services still hold the database."""
    for _ in range(60):
        try:
            response = await client.post(path, json=body)
        except httpx.TransportError:
            response = None
        if response is not None and response.status_code < 500:
            response.raise_for_status()
            return response.json()
        await asyncio.sleep(0.5)
    raise TimeoutError(f"{path} kept failing")


async def _burst(api_url: str) -> Counter[int]:
    """Status codes of ROUNDS rounds of RUNS label updates and RUNS worker heartbeats at once."""
    async with httpx.AsyncClient(base_url=api_url, timeout=120) as client:
        flow = await _ready(client, "/flows/", {"name": "burst"})
        await _ready(client, "/work_pools/", {"name": "burst", "type": "process"})
        runs = [
            (await _ready(client, "/flow_runs/", {"flow_id": flow["id"], "name": f"r{i}"}))["id"]
            for i in range(RUNS)
        ]
        codes: Counter[int] = Counter()

        async def labels(run_id: str, round_: int) -> None:
            response = await client.patch(f"/flow_runs/{run_id}/labels", json={f"k{round_}": "v"})
            codes[response.status_code] += 1

        async def heartbeat(index: int) -> None:
            response = await client.post(
                "/work_pools/burst/workers/heartbeat",
                json={"name": f"worker-{index % WORKERS}", "heartbeat_interval_seconds": 30},
            )
            codes[response.status_code] += 1

        for round_ in range(ROUNDS):
            calls = []
            for index, run_id in enumerate(runs):
                calls += [labels(run_id, round_), heartbeat(index)]
            await asyncio.gather(*calls)
        return codes


async def _health_beside_websockets(api_url: str) -> tuple[int, int | None]:
    """Open up to WEBSOCKETS event streams (as many flow runs hold), keep them open and ask for
    /health: (websockets opened, its status, or None when it got no answer within 10 s)."""
    events_in = api_url.replace("http://", "ws://", 1) + "/events/in"
    async with contextlib.AsyncExitStack() as sockets:
        opened = 0
        for _ in range(WEBSOCKETS):
            try:
                await sockets.enter_async_context(connect(events_in, open_timeout=10))
            except TimeoutError:
                break
            opened += 1
        async with httpx.AsyncClient(timeout=10) as client:
            try:
                return opened, (await client.get(f"{api_url}/health")).status_code
            except httpx.TimeoutException:
                return opened, None


def _start_plain(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Prefect's own `prefect server start`, with ConnectHub's server settings."""
    port = free_port()
    home = tmp_path / "plain"
    home.mkdir()
    env = server_environment(dict(os.environ), home, port)
    env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}"
    with open(home / "server.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    return process, port


def _start_ours(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    database = f"sqlite+aiosqlite:///{tmp_path / 'ours.db'}"
    return start_prefect_server(tmp_path / "ours", port, database), port


def _against(process: subprocess.Popen[bytes], port: int, probe):  # type: ignore[no-untyped-def]
    try:
        wait_http(f"{server_api_url(port)}/health", SERVER_START_TIMEOUT, process)
        return asyncio.run(probe(server_api_url(port)))
    finally:
        stop_process(process)


def test_a_burst_of_writes_gets_no_503_from_the_embedded_server(tmp_path: Path) -> None:
    codes = _against(*_start_ours(tmp_path), _burst)
    assert codes == Counter({204: 2 * RUNS * ROUNDS}), codes
    log = (tmp_path / "ours" / "server.log").read_text()
    assert "database is locked" not in log


def test_prefect_s_own_server_answers_the_same_burst_with_503(tmp_path: Path) -> None:
    """The burst above is one that needs the fix: without it, SQLite refuses part of it."""
    codes = _against(*_start_plain(tmp_path), _burst)
    assert codes[503] > 0, codes


def test_the_embedded_server_answers_beside_more_websockets_than_its_request_limit(
    tmp_path: Path,
) -> None:
    assert _against(*_start_ours(tmp_path), _health_beside_websockets) == (WEBSOCKETS, 200)


def test_prefect_s_own_server_stops_answering_once_websockets_fill_its_request_limit(
    tmp_path: Path,
) -> None:
    """What 35 flow runs in flight did to Prefect's own server on SQLite."""
    opened, status = _against(*_start_plain(tmp_path), _health_beside_websockets)
    # Up to 100 open (a slot may be in use by the server's own clients), then nothing answers.
    assert 90 <= opened <= 100 and status is None, (opened, status)
