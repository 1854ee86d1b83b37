"""The embedded Prefect server on SQLite answers a burst of read-then-write requests without 503.

Prefect's own `prefect server start` on SQLite begins those transactions DEFERRED, and a burst
of flow-run label updates (what a worker sends when it submits a run) and worker heartbeats
fails with "database is locked", answered 503; `python -m deployments.server` (what `connecthub
up` and the tests start) begins them IMMEDIATE and answers every one. Both servers are real
processes on a fresh SQLite database each, hit by the same burst.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx

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


def _burst_against(process: subprocess.Popen[bytes], port: int) -> Counter[int]:
    try:
        wait_http(f"{server_api_url(port)}/health", SERVER_START_TIMEOUT, process)
        return asyncio.run(_burst(server_api_url(port)))
    finally:
        stop_process(process)


def test_a_burst_of_writes_gets_no_503_from_the_embedded_server(tmp_path: Path) -> None:
    port = free_port()
    ours = start_prefect_server(
        tmp_path / "ours", port, f"sqlite+aiosqlite:///{tmp_path / 'ours.db'}"
    )
    codes = _burst_against(ours, port)
    assert codes == Counter({204: 2 * RUNS * ROUNDS}), codes
    log = (tmp_path / "ours" / "server.log").read_text()
    assert "database is locked" not in log


def test_prefect_s_own_server_answers_the_same_burst_with_503(tmp_path: Path) -> None:
    """The burst above is one that needs the fix: without it, SQLite refuses part of it."""
    port = free_port()
    home = tmp_path / "plain"
    home.mkdir()
    env = server_environment(dict(os.environ), home, port)
    env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}"
    with open(home / "server.log", "wb") as log:
        plain = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        codes = _burst_against(plain, port)
    assert codes[503] > 0, codes
