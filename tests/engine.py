"""Engine fixtures: a real Prefect server on PostgreSQL and a real `connecthub worker`.

Both start once per test session, on free ports, with their own PREFECT_HOME and database; their
output goes to files under the session directory (printed when a test fails to help diagnose).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import create_pg_database, drop_pg_database, use_settings

SERVER_START_TIMEOUT = 90
REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM the process group, then SIGINT, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue


def start_prefect_server(home: Path, port: int, database_url: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_DATABASE_CONNECTION_URL=database_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
    )
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "server.log", "wb")  # noqa: SIM115 - the process owns it
    return subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


@pytest.fixture(scope="session")
def prefect_server(session_dir: Path) -> Iterator[str]:
    """A real `prefect server start` on PostgreSQL; sets PREFECT_API_URL and returns it."""
    name = f"prefect_test_{os.getpid()}"
    create_pg_database(name)
    port = free_port()
    home = session_dir / "prefect"
    process = start_prefect_server(
        home, port, f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    )
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        wait_http(f"{api_url}/health", SERVER_START_TIMEOUT, process)
    except Exception:
        stop_process(process)
        print((home / "server.log").read_text()[-5000:])
        raise
    os.environ["PREFECT_HOME"] = str(home)
    use_settings(None, PREFECT_API_URL=api_url)
    yield api_url
    stop_process(process)
    drop_pg_database(name)


CLI = [sys.executable, "-m", "connecthub.cli"]


def start_worker(log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A real `connecthub worker` with `env`, started once it says so; output to `log_path`."""
    env = dict(env)
    # Flow runs import the test plugins in tests/plugins from the repository root.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    log = open(log_path, "wb")  # noqa: SIM115 - the process owns it
    process = subprocess.Popen(
        [*CLI, "worker"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 90
    while b"started" not in log_path.read_bytes().lower():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise RuntimeError(f"worker did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.3)
    return process


def start_admin(log_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """A real `connecthub admin` (uvicorn) on a free port, once healthy; returns its base URL."""
    port = free_port()
    log = open(log_path, "wb")  # noqa: SIM115 - the process owns it
    process = subprocess.Popen(
        [*CLI, "admin", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base_url}/healthz", 90, process)
    except Exception:
        stop_process(process)
        print(log_path.read_text()[-5000:])
        raise
    return process, base_url


@pytest.fixture(scope="session")
def worker(pg_database: str, prefect_server: str, session_dir: Path) -> Iterator[Path]:
    """A real `connecthub worker` on the session database; yields its log file."""
    log_path = session_dir / "worker.log"
    process = start_worker(log_path, dict(os.environ))
    yield log_path
    stop_process(process)
