"""Processes of the tests and benchmarks: free ports, waiting for HTTP, stopping a process
group, starting a real Prefect server (alone, or on a PostgreSQL database of its own for as long
as a block runs), `connecthub worker` and `connecthub admin`, and finding the processes that
carry a marker in their environment."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from deployments.server import server_argv, server_environment
from tests.support.pg import create_pg_database, drop_pg_database, pg_url

SERVER_START_TIMEOUT = 90
REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "connecthub.app.cli"]


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
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


def start_prefect_server(
    home: Path, port: int, database_url: str, **overrides: str
) -> subprocess.Popen[bytes]:
    """A real `prefect server start` with ConnectHub's server settings (but for `overrides`),
    on `database_url`."""
    env = server_environment(dict(os.environ), home, port)
    env.update(PREFECT_SERVER_DATABASE_CONNECTION_URL=database_url, **overrides)
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "server.log", "wb")  # noqa: SIM115 - the process owns it
    return subprocess.Popen(
        server_argv(port), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


@contextmanager
def prefect_server_on_postgres(
    home: Path, database: str, **overrides: str
) -> Iterator[str]:
    """A real `prefect server start` (as `start_prefect_server`) on a new PostgreSQL database
    `database`: its API URL, once it answers. Stopped, and the database dropped, when the block
    ends; its log is printed when it does not start."""
    create_pg_database(database)
    port = free_port()
    process = start_prefect_server(home, port, pg_url(database, driver="asyncpg"), **overrides)
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        try:
            wait_http(f"{api_url}/health", SERVER_START_TIMEOUT, process)
        except Exception:
            print((home / "server.log").read_text()[-5000:])
            raise
        yield api_url
    finally:
        stop_process(process)
        drop_pg_database(database)


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


def start_admin(
    log_path: Path, env: dict[str, str], port: int | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """A real `connecthub admin` (uvicorn) on `port` (default: a free one), once healthy;
    returns its base URL."""
    port = port or free_port()
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


def processes_with_env(marker: str) -> list[int]:
    """Pids of live processes whose environment holds `marker` (our unique DATA_DIR)."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                state = (entry / "stat").read_text().split(") ", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found
