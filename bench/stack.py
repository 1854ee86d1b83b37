"""The services a benchmark runs against, started for the run and stopped at its end.

`Stack` owns everything the run creates: PostgreSQL databases (named `bench_<pid>_<name>`,
dropped at close), `prefect server start` processes on PostgreSQL, `connecthub worker` processes
and the admin under uvicorn, each logging to a file in the run directory. `work_pool()` has
ConnectHub's sync create the work pool, as the product does. It starts and stops them with the
helpers it shares with the test suite (tests/support).

Workers run with `bench/_hook` on PYTHONPATH, so each flow-run process records its start time,
its Prefect API calls and its peak memory into `Stack.process_log_dir` (see the hook).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx

from connecthub.core.config import get_settings
from connecthub.db.engine import get_engine, reset_engine
from connecthub.db.migrate import upgrade
from deployments.sync import sync_all
from tests.support.pg import create_pg_database, drop_pg_database, pg_url
from tests.support.processes import (
    REPO_ROOT,
    free_port,
    start_prefect_server,
    stop_process,
    wait_http,
)
from tests.support.settings import use_settings

HOOK_DIR = Path(__file__).resolve().parent / "_hook"
SERVER_START_TIMEOUT = 120
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "bench-admin-password"


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid


class Stack:
    """Databases and processes of one benchmark run; `close()` removes them all."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.process_log_dir = run_dir / "flow-processes"
        self.process_log_dir.mkdir(exist_ok=True)
        self.prefix = f"bench_{os.getpid()}"
        self._exit = ExitStack()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._exit.close()

    # --- PostgreSQL ---------------------------------------------------------------------

    def database(self, name: str) -> str:
        """A new empty database; returns its name (dropped at close)."""
        full = f"{self.prefix}_{name}"
        create_pg_database(full)
        self._exit.callback(drop_pg_database, full)
        return full

    # --- Prefect server -----------------------------------------------------------------

    def prefect_server(self, name: str, **settings: str) -> Service:
        """A fresh `prefect server start` on its own PostgreSQL database, with ConnectHub's
        server settings but for `settings`."""
        database = self.database(f"prefect_{name}")
        home = self.run_dir / f"prefect-{name}"
        port = free_port()
        process = start_prefect_server(
            home, port, pg_url(database, driver="asyncpg"), **settings
        )
        service = Service(name, process, home / "server.log", f"http://127.0.0.1:{port}/api")
        self._exit.callback(self.stop, service)
        try:
            wait_http(f"{service.url}/health", SERVER_START_TIMEOUT, process)
        except Exception:
            print(service.log_path.read_text()[-3000:], file=sys.stderr)
            raise
        return service

    def stop(self, service: Service) -> None:
        stop_process(service.process)

    # --- ConnectHub ---------------------------------------------------------------------

    def use_connecthub(self, name: str, prefect_api_url: str | None) -> str:
        """Point this process (and the children it starts) at a new migrated ConnectHub DB."""
        database = self.database(f"connecthub_{name}")
        data_dir = self.run_dir / f"data-{name}"
        env = {
            "DATA_DIR": str(data_dir),
            "DB_URL": pg_url(database),
            "FERNET_KEY_PATH": str(data_dir / "fernet.key"),
            "ADMIN_USERNAME": ADMIN_USERNAME,
            "ADMIN_PASSWORD": ADMIN_PASSWORD,
            "SESSION_SECRET": "bench-session-secret-0123456789abcdef",
            "PREFECT_HOME": str(self.run_dir / "prefect-client"),
        }
        if prefect_api_url:
            env["PREFECT_API_URL"] = prefect_api_url
        else:
            os.environ.pop("PREFECT_API_URL", None)
        use_settings(None, **env)
        upgrade(get_engine())
        self._exit.callback(reset_engine)
        return database

    def work_pool(self) -> None:
        """The work pool as the product makes it, by its sync (`sync_all`), before any worker
        starts: a worker started first would create it with Prefect's own template, and keep
        working from that copy until its next sync with the server."""
        sync_all()

    def child_env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO_ROOT), str(HOOK_DIR), env.get("PYTHONPATH")])
        )
        env["BENCH_PROCESS_LOG_DIR"] = str(self.process_log_dir)
        env.update(extra)
        return env

    def worker(self, name: str, limit: int | None = None, **extra_env: str) -> Service:
        """A `connecthub worker` on the configured pool; waits until it polls."""
        log_path = self.run_dir / f"worker-{name}.log"
        argv = [sys.executable, "-m", "connecthub.app.cli", "worker", "--name", f"bench-{name}"]
        if limit:
            argv += ["--limit", str(limit)]
        log = open(log_path, "wb")  # noqa: SIM115 - the process owns it
        process = subprocess.Popen(
            argv, env=self.child_env(**extra_env), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=REPO_ROOT,
        )
        service = Service(name, process, log_path)
        self._exit.callback(self.stop, service)
        deadline = time.monotonic() + 90
        while b"started" not in log_path.read_bytes().lower():
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop(service)
                raise RuntimeError(f"worker did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        return service

    def admin(self, name: str = "admin") -> Service:
        """The admin app under a real uvicorn, on a free port; waits for /healthz."""
        port = free_port()
        log_path = self.run_dir / f"{name}.log"
        log = open(log_path, "wb")  # noqa: SIM115 - the process owns it
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "connecthub.app.main:create_app",
             "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
            env=self.child_env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=REPO_ROOT,
        )
        service = Service(name, process, log_path, f"http://127.0.0.1:{port}")
        self._exit.callback(self.stop, service)
        try:
            wait_http(f"{service.url}/healthz", 60, process)
        except Exception:
            print(log_path.read_text()[-3000:], file=sys.stderr)
            raise
        return service


def admin_session(base_url: str) -> httpx.Client:
    """An httpx client logged in to the admin at `base_url`."""
    client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=60)
    response = client.post(
        "/admin/login", data={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}
    )
    if response.status_code not in (302, 303) or "login" in response.headers.get("location", ""):
        raise RuntimeError(f"admin login failed: HTTP {response.status_code}")
    return client


# --- memory -------------------------------------------------------------------------------


def _status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss_kb(pid: int) -> int | None:
    """VmHWM: the peak resident set size of `pid` so far."""
    return _status_kb(pid, "VmHWM")


def rss_kb(pid: int) -> int | None:
    return _status_kb(pid, "VmRSS")


def children(pid: int) -> list[int]:
    """Direct children of `pid` (all its threads)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                found += [int(child) for child in handle.read().split()]
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    queue = [pid]
    while queue:
        for child in children(queue.pop()):
            found.append(child)
            queue.append(child)
    return found


def wait_no_children(pid: int, timeout: float = 15) -> bool:
    """Wait until `pid` has no child process left; False on timeout."""
    deadline = time.monotonic() + timeout
    while children(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def settings_summary() -> dict[str, str]:
    settings = get_settings()
    return {"work_pool": settings.work_pool, "db": settings.database_url.split("@")[-1]}
