"""The services a benchmark runs against, started for the run and stopped at its end.

`Stack` owns everything the run creates: PostgreSQL databases (named `bench_<pid>_<name>`,
dropped at close), `prefect server start` processes on PostgreSQL, `connecthub worker` processes
(each the parent of Prefect's worker and, unless warm start is off, of the fork server), plain
`prefect worker start` processes (the bare flow's, as a user of Prefect alone runs it) and the
admin under uvicorn, each logging to a file in the run directory. `work_pool()` has ConnectHub's
sync create the work pool, as the product does; `bare_pool()` has `prefect work-pool create
--type process` create one with Prefect's default job template. It starts and stops them with
the helpers it shares with the test suite (tests/support).

Workers run with `bench/_hook` on PYTHONPATH, so each flow-run process records its start time,
its Prefect API calls and its peak memory into `Stack.process_log_dir` (see the hook). They also
get a bytecode cache in the run directory (PYTHONPYCACHEPREFIX): this machine's environment sets
PYTHONDONTWRITEBYTECODE, so without it every new interpreter would compile ConnectHub's modules
from source (~0.4 CPU-s per cold run here), which an installed ConnectHub never does.

The process helpers at the end find, under any process (a worker, `connecthub up`), the
processes of flow runs (`run_processes`, `runs_in_flight`), split a worker tree's CPU time
between the worker's own processes and its runs (`worker_cpu`), and read memory from /proc.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
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


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


class Stack:
    """Databases and processes of one benchmark run; `close()` removes them all."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.process_log_dir = run_dir / "flow-processes"
        self.process_log_dir.mkdir(exist_ok=True)
        self.prefix = f"bench_{os.getpid()}"
        self._exit = ExitStack()
        # A SIGTERM would end this process without unwinding, leaving every server and worker
        # it started running (they run in sessions of their own): stop as Ctrl-C stops.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _exit_on_signal)

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

    def bare_pool(self, name: str) -> None:
        """A work pool as `prefect work-pool create --type process` makes it (Prefect's default
        job template: no command, so its runs start through Prefect's workspace supervisor)."""
        subprocess.run(
            [sys.executable, "-m", "prefect", "work-pool", "create", name, "--type", "process"],
            env=self.child_env(), cwd=REPO_ROOT, check=True, capture_output=True,
        )

    def child_env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO_ROOT), str(HOOK_DIR), env.get("PYTHONPATH")])
        )
        env["BENCH_PROCESS_LOG_DIR"] = str(self.process_log_dir)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(self.run_dir / "pycache")
        env.update(extra)
        return env

    def worker(self, name: str, limit: int | None = None, **extra_env: str) -> Service:
        """A `connecthub worker` on the configured pool; waits until it polls."""
        argv = [sys.executable, "-m", "connecthub.app.cli", "worker", "--name", f"bench-{name}"]
        return self._worker(name, argv, limit, self.child_env(**extra_env))

    def prefect_worker(self, name: str, pool: str, limit: int | None = None,
                       **extra_env: str) -> Service:
        """A plain `prefect worker start --pool POOL --type process`; waits until it polls."""
        argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool,
                "--type", "process", "--name", f"bench-{name}"]
        return self._worker(name, argv, limit, self.child_env(**extra_env))

    def _worker(self, name: str, argv: list[str], limit: int | None,
                env: dict[str, str]) -> Service:
        log_path = self.run_dir / f"worker-{name}.log"
        if limit:
            argv = [*argv, "--limit", str(limit)]
        log = open(log_path, "wb")  # noqa: SIM115 - the process owns it
        process = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=REPO_ROOT,
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


# --- processes: memory, CPU, the processes of flow runs -------------------------------------


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


def smaps_rollup(pid: int) -> dict[str, int]:
    """/proc/<pid>/smaps_rollup in kB (Rss, Pss, Shared_Clean, Private_Dirty, ...); {} if gone.

    Pss charges each page shared by k processes 1/k to each: the fair share of a forked child
    that still shares its parent's pages copy-on-write."""
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if len(parts) == 2 and parts[1] == "kB":
                    found[key] = int(parts[0])
    except OSError:
        return {}
    return found


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


def _argv(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return [part.decode(errors="replace") for part in cmdline.read().split(b"\0") if part]
    except OSError:
        return []


def is_prefect_worker(pid: int) -> bool:
    """`prefect worker start`, or `connecthub worker`'s `deployments.prefect_worker` child."""
    argv = _argv(pid)
    return any(argv[i + 1 : i + 4] == ["worker", "start", "--pool"]
               and argv[i] in ("prefect", "deployments.prefect_worker")
               for i in range(len(argv)))


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def is_forkserver(pid: int) -> bool:
    """Whether `pid` is a fork server (its forked run processes keep its command line)."""
    return ("deployments.forkserver" in _argv(pid)
            and "deployments.forkserver" not in _argv(_parent(pid)))


def forkserver_pid(root: int) -> int | None:
    """The fork server under `root` (a `connecthub worker`), if one runs."""
    return next((pid for pid in descendants(root) if is_forkserver(pid)), None)


def _starters(root: int) -> list[int]:
    """The processes under `root` (itself included) that start flow runs' processes: Prefect
    workers (their children: launchers, engines, workspace supervisors) and fork servers (their
    children: forked run processes)."""
    return [pid for pid in [root, *descendants(root)] if is_prefect_worker(pid)
            or is_forkserver(pid)]


def runs_in_flight(root: int) -> list[int]:
    """One process per flow run in flight under `root`: the process a Prefect worker started
    for it (on the warm path, the launcher; its forked run process is the fork server's)."""
    return [child for pid in _starters(root) if is_prefect_worker(pid)
            for child in children(pid)]


def run_processes(root: int) -> list[int]:
    """Every process of the flow runs under `root`: launchers, engines, supervisors and
    forked run processes, with whatever they started."""
    return [pid for starter in _starters(root) for pid in descendants(starter)]


def wait_idle(root: int, timeout: float = 15) -> bool:
    """Wait until no flow-run process is left under `root`; False on timeout."""
    deadline = time.monotonic() + timeout
    while run_processes(root):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[float, float]:
    """(own, reaped) CPU seconds of `pid`: its user + system time, and that of the children it
    has waited for (the kernel adds a child's own and reaped time to its parent's on wait)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        own = int(fields[11]) + int(fields[12])
        reaped = int(fields[13]) + int(fields[14])
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0
    return own / CLOCK_TICKS, reaped / CLOCK_TICKS


def tree_cpu(root: int) -> float:
    """CPU seconds of `root` and every process under it, live or reaped by one of them: each
    process counts once, as a live process's own time or in the reaped time of its parent."""
    return sum(sum(cpu_times(pid)) for pid in [root, *descendants(root)])


def worker_cpu(root: int) -> tuple[float, float]:
    """(worker, runs) CPU seconds of the worker tree at `root`: the worker's own processes
    (`connecthub worker`, Prefect's worker, the fork server), and the processes of its flow runs,
    live or already reaped by Prefect's worker or the fork server. Deltas of two readings give
    the CPU spent in between, whether a run process ended meanwhile or not."""
    runs = set(run_processes(root))
    starters = set(_starters(root))
    worker = flow = 0.0
    for pid in [root, *descendants(root)]:
        own, reaped = cpu_times(pid)
        if pid in runs:
            flow += own + reaped
        else:
            worker += own
            if pid in starters:
                flow += reaped
            else:
                worker += reaped  # e.g. a fork server that died and was restarted
    return worker, flow


def _postmasters() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()
            and _comm(int(entry)) == "postgres" and _comm(_parent(int(entry))) != "postgres"]


def postgres_cpu() -> float:
    """CPU seconds of the PostgreSQL server, all databases, backends that exited included (the
    postmaster reaps them). Other databases on the same server (other test suites) count too."""
    return sum(tree_cpu(pid) for pid in _postmasters())


class PostgresSampler:
    """CPU seconds of the PostgreSQL backends that serve this run's databases, sampled in a
    thread every `every` seconds.

    A backend's process title names its database (`postgres: 15/main: postgres
    bench_<pid>_prefect_main 127.0.0.1(...) idle`), which tells this run's backends from those of
    other databases on the same server. A backend's CPU time counts from its start (a forked
    process's times start at 0), as last sampled: what it spends after its last sample, and a
    backend that lives less than `every`, are missed. `total()` is cumulative since `start()`."""

    def __init__(self, prefix: str, every: float = 0.2) -> None:
        self.prefix = prefix
        self.every = every
        self._first: dict[tuple[int, int], float] = {}  # (pid, start tick) -> CPU at first sight
        self._last: dict[tuple[int, int], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="postgres-cpu", daemon=True)
        self._masters = _postmasters()  # every backend is a child of its server's postmaster

    def start(self) -> None:
        self._scan(first=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def total(self) -> float:
        self._scan()
        with self._lock:
            return sum(cpu - self._first[key] for key, cpu in self._last.items())

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._scan()

    def _scan(self, first: bool = False) -> None:
        marker = f" {self.prefix}_".encode()
        for master in self._masters:
            for pid in children(master):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                        if marker not in cmdline.read():
                            continue
                    with open(f"/proc/{pid}/stat") as stat:
                        fields = stat.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                key = (pid, int(fields[19]))
                cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
                with self._lock:
                    self._first.setdefault(key, cpu if first else 0.0)
                    self._last[key] = cpu


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except OSError:
        return ""


def settings_summary() -> dict[str, str]:
    settings = get_settings()
    return {"work_pool": settings.work_pool, "db": settings.database_url.split("@")[-1]}
