"""Engine fixtures: a real Prefect server on PostgreSQL and a real `connecthub worker`.

Both start once per test session, on free ports, with their own PREFECT_HOME and database; their
output goes to files under the session directory (printed when a test fails to help diagnose).
The helpers that start and stop them are in tests/support/processes.py. `own_pool` is a work
pool of one test's own, with a worker the test may kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pg import prefect_database_name
from tests.support.processes import prefect_server_on_postgres, start_worker, stop_process
from tests.support.settings import use_settings


@pytest.fixture(scope="session")
def prefect_server(session_dir: Path) -> Iterator[str]:
    """A real `prefect server start` on PostgreSQL; sets PREFECT_API_URL and returns it."""
    home = session_dir / "prefect"
    with prefect_server_on_postgres(home, prefect_database_name()) as api_url:
        os.environ["PREFECT_HOME"] = str(home)
        use_settings(None, PREFECT_API_URL=api_url)
        yield api_url


@pytest.fixture(scope="session")
def worker(pg_database: str, prefect_server: str, session_dir: Path) -> Iterator[Path]:
    """A real `connecthub worker` on the session database; yields its log file."""
    log_path = session_dir / "worker.log"
    process = start_worker(log_path, dict(os.environ))
    yield log_path
    stop_process(process)


@pytest.fixture
def own_pool(
    pg_env: None, prefect_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[subprocess.Popen[bytes]]:
    """A work pool of this test's own (set in the settings) and its worker, which heartbeats
    every 2 s and counts as gone after 8 s; yields the worker's process."""
    use_settings(
        monkeypatch, CONNECTHUB_WORK_POOL=f"pool-{uuid.uuid4().hex[:8]}",
        PREFECT_WORKER_HEARTBEAT_SECONDS="2", CONNECTHUB_WORKER_STALE_SECONDS="8",
        CONNECTHUB_NO_WORKER_ALERT_SECONDS="8",
    )
    worker = start_worker(tmp_path / "worker.log", dict(os.environ))
    yield worker
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
