"""The fork server: a warm parent that forks one process per flow run.

`python -m deployments.forkserver` runs beside the Prefect worker (`connecthub worker` starts
both, with the same environment). It imports Prefect's engine, the generic flow
`flows.execute_job` and what they import (pydantic, httpx, anyio, SQLAlchemy, Prefect's client,
schemas and runner), then waits on a Unix socket (mode 0600, path from
`deployments.launcher.socket_path()`). For each `python -m deployments.launcher` the worker
starts, it forks a child that becomes that run's process: the child takes the launcher's stdin,
stdout, stderr, environment, argv and working directory, and runs what `python -m
prefect.engine` runs (through `runpy`, so exactly the engine's `__main__`). All the rest (loading
the flow run, the pull steps, the flow, states, logs, heartbeats, cancellation, retries,
timeouts, hooks) is Prefect's own code, in a process of the run's own.

What the fork server owns:

- forking only in a clean state: no thread, no Prefect client, no database connection, no file
  or socket but its own. It checks this before every fork (`threading.active_count()` and
  `/proc/self/task`; `/proc/self/fd`), and refuses to fork otherwise: a child of a process
  with threads can inherit a lock held by a thread that does not exist in the child, and a
  connection shared by two processes corrupts both;
- making the child a faithful run process: a session of its own (signals reach it only through
  its launcher, as they reach a process the worker started itself), the launcher's fds as
  0/1/2 and no other fd, the launcher's environment, cwd and umask, the interpreter's default signal
  dispositions, Prefect's settings (and logging, when they differ) rebuilt from that
  environment, ConnectHub's `get_settings()` cleared, the run processes' lowest CPU priority
  (`lower_priority`, as the launcher explains), and PR_SET_PDEATHSIG so that a child never
  outlives the fork server;
- each child's lifecycle: it reaps it (a pidfd per child, so no SIGCHLD handler and no pid
  reuse race), reports its wait status to the launcher, and kills it when the launcher's
  connection closes (a launcher killed with SIGKILL must not leave its run running);
- refusing what it cannot serve faithfully: a request from another interpreter, or with other
  PYTHON* variables than its own (they shape an interpreter at start-up, and this one has
  started). The launcher then execs a fresh `python -m prefect.engine`.

Plugins are never imported here: the flow imports them by `handler_path` after the fork, so an
edited plugin runs on the next run without a restart. The modules in PRELOAD (Prefect,
ConnectHub's core, the flow's imports) are imported once; a change to them needs a restart of
the fork server, as it needs one of the worker; so does the flow's own module, which the
deployments name by module path (`deployments.client.ENTRYPOINT`), so Prefect imports it from
what the fork server imported instead of executing the file again in every run. Before it
listens, it does what every run would otherwise do on first use (`complete_lazy_state`), and
checks the Prefect server's version, as each Prefect client does once per process, so that the
runs inherit the check (`check_server_version`).

Why: a new `python -m prefect.engine` spends most of its CPU importing Prefect and ConnectHub
before it asks the API anything. Measured on 2 shared cores against `prefect server start` on
PostgreSQL, one worker, sequential runs (median of 12; run CPU is the run's process tree, with
the launcher; "exit" is when the worker sees the process end):

    | flow                          | start      | run CPU-s | trigger->Completed | ->exit |
    | trivial                       | new engine | 2.16      | 3.10 s             | 4.85 s |
    | trivial                       | forked     | 0.63      | 1.53 s             | 2.93 s |
    | ConnectHub job (example, 10x) | new engine | 2.82      | 3.32 s             | 4.98 s |
    | ConnectHub job (example, 10x) | forked     | 0.71      | 1.81 s             | 2.86 s |

and 60 queued trivial runs on one worker (`--limit 8`): 42 runs/min started new, 98 forked.
Two details matter beyond the imports: `gc.freeze()` before forking (else the child's
collections and its interpreter teardown touch, and so copy, most of the ~110 MB it shares with
the fork server: +0.4 CPU-s per run), and not redoing Prefect's logging set-up when the child's
settings are the fork server's (parsing logging.yml: +0.08 CPU-s).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import importlib
import logging
import os
import runpy
import selectors
import signal
import socket
import sys
import threading
import warnings
from dataclasses import dataclass

from sqlalchemy.engine import make_url

from connecthub.core.config import get_settings
from deployments.launcher import (
    ENGINE_MODULE,
    is_open,
    lower_priority,
    receive_message,
    send_message,
    socket_path,
)

# What every run process imports before it runs the flow's body: imported once here and
# shared copy-on-write. Plugins (extensions/, the connecthub.jobs entry points) never.
PRELOAD = (
    "prefect",
    "prefect.engine",
    "prefect.flow_engine",
    "prefect._internal.metrics",
    "prefect.runner",
    "prefect.deployments.steps",
    "anyio._backends._asyncio",
    "anyio.streams.stapled",
    "anyio.streams.tls",
    "encodings.idna",
    "rich._emoji_codes",
    "prefect._vendor.croniter",
    "connecthub.core.config",
    "flows.execute_job",
)
PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
LOG_FORMAT = "%(asctime)s | %(levelname)-7s | %(name)s - %(message)s"

logger = logging.getLogger("connecthub.forkserver")


def preload() -> None:
    # Prefect's import-time SDK analytics may start a thread when stdout is a terminal; the
    # run processes get the launcher's environment after the fork, with or without this.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    for name in PRELOAD:
        importlib.import_module(name)
    # DB_URL's driver, imported without connecting: every run opens JobLog through it, and
    # psycopg alone is ~55 modules (~70 ms of CPU per run when each child imported it).
    make_url(get_settings().database_url).get_dialect().import_dbapi()
    complete_lazy_state()


def complete_lazy_state() -> None:
    """Do here, once, what every run process otherwise did on first use (found by sampling 20
    runs forked at once; a run process's CPU went from 0.255 to 0.235 s, bench/findings.md).

    - Pydantic models: ~260 of Prefect's client, event and artifact models are left
      incomplete at import (forward references) and build their validators on first use, each
      run again: the flow run and deployment it reads, the updates, logs and events it sends.
    - SQLAlchemy's mappers, configured on the first ORM query (JobLog's).
    - The time zone lists a schedule's validation reads (pytz's, built by probing ~600 files,
      and the system's): every deployment a run reads carries its job's cron schedule.
    No I/O but reading files, no thread, nothing that changes between runs.
    """
    from prefect.client.schemas.schedules import CronSchedule, RRuleSchedule
    from pydantic import BaseModel
    from sqlalchemy.orm import configure_mappers

    pending: list[type[BaseModel]] = BaseModel.__subclasses__()
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        if not model.__pydantic_complete__:
            with contextlib.suppress(Exception):  # still incomplete: built on use, as before
                model.model_rebuild()
    configure_mappers()
    CronSchedule(cron="0 0 * * *", timezone="UTC")
    RRuleSchedule(rrule="FREQ=DAILY", timezone="UTC")


def check_server_version() -> None:
    """Check the Prefect server's version once here, for every run process forked after.

    Prefect's clients check it once per process, API URL and Prefect version, each check a
    request and an SSL context: a run process made three (its API client's, its events and
    log clients'). Checked here, the children inherit the result as the process that checked; one
    whose PREFECT_API_URL differs checks again itself, and so does every run when the server
    cannot be reached now. Prefect's own worker also checks once in its life.
    """
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    api_url = settings.api.url
    if not api_url or not settings.client.server_version_check_enabled:
        return
    try:
        from prefect._internal.version_checking import check_server_version as check_url
        from prefect.context import SyncClientContext

        with SyncClientContext.get_or_create():  # checks for PrefectClient's cache key
            pass
        asyncio.run(check_url(api_url, logger, raise_on_error=False))  # the events client's
    except Exception as error:  # the runs will check (and fail) themselves
        logger.warning("the Prefect server's version was not checked (%s); every run checks it",
                       error)


def thread_count() -> int:
    """Threads of this process, as Python and as the kernel count them (the larger)."""
    return max(threading.active_count(), len(os.listdir("/proc/self/task")))


def open_fds() -> set[int]:
    with os.scandir("/proc/self/fd") as entries:
        listed = {int(entry.name) for entry in entries}
    return {fd for fd in listed if is_open(fd)}  # drops the scandir's own fd


def interpreter_environment(env: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in env.items() if key.startswith("PYTHON")}


@dataclass
class Request:
    """One run process to start: what its launcher sent."""

    argv: list[str]
    cwd: str
    env: dict[str, str]
    executable: str
    umask: int
    fds: dict[int, int]  # target (0, 1 or 2) -> the fd received for it

    @classmethod
    def parse(cls, message: dict, fds: list[int]) -> Request:
        targets = message.get("fds")
        if not isinstance(targets, list) or len(targets) != len(fds):
            raise ValueError("the file descriptors do not match the request")
        if not set(targets) <= {0, 1, 2}:
            raise ValueError("only stdin, stdout and stderr can be passed")
        argv, cwd, env = message.get("argv"), message.get("cwd"), message.get("env")
        umask = message.get("umask")
        if not (
            isinstance(argv, list) and all(isinstance(arg, str) for arg in argv)
            and isinstance(cwd, str)
            and isinstance(umask, int)
            and isinstance(env, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        ):
            raise ValueError("malformed request")
        return cls(argv=argv, cwd=cwd, env=env, executable=str(message.get("executable")),
                   umask=umask, fds=dict(zip(targets, fds, strict=True)))

    @property
    def flow_run_id(self) -> str:
        return self.argv[0] if self.argv else self.env.get("PREFECT__FLOW_RUN_ID", "?")

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


@dataclass
class Child:
    pid: int
    pidfd: int
    conn: socket.socket | None  # None once the launcher is gone
    flow_run_id: str


class ForkServer:
    def __init__(self, path: str, inherited_fds: set[int]) -> None:
        self.path = path
        self.pid = os.getpid()
        self.startup_cwd = os.getcwd()
        self.python_env = interpreter_environment(dict(os.environ))
        # Whatever this process was started with (no Python object's); children close them.
        self.inherited_fds = inherited_fds
        self.children: dict[int, Child] = {}
        self.stopping = False

    def serve(self) -> Request | None:
        """Serve until stopped (None), or, in a forked child, return that child's Request."""
        self.selector = selectors.DefaultSelector()
        self.listener = self._listen()
        self.wakeup_r, self.wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wakeup_w, warn_on_full_buffer=False)
        self.saved_handlers = {sig: signal.signal(sig, _wake_only) for sig in STOP_SIGNALS}
        self.selector.register(self.listener, selectors.EVENT_READ, ("accept", None))
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, ("signal", None))
        # What the children share with this process stays out of the collector's way.
        gc.collect()
        gc.freeze()
        logger.info("fork server %d listening on %s", self.pid, self.path)
        try:
            while not (self.stopping and not self.children):
                for key, _ in self.selector.select():
                    kind, item = key.data
                    request = getattr(self, f"_on_{kind}")(key.fileobj, item)
                    if request is not None:
                        return request  # in the child
        finally:
            if os.getpid() == self.pid:
                self._close_listener()
        logger.info("fork server %d stopped", self.pid)
        return None

    def _listen(self) -> socket.socket:
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as probe:
            try:
                probe.connect(self.path)
            except (FileNotFoundError, ConnectionRefusedError):
                pass  # nobody listens: no socket file, or a stale one
            else:
                raise SystemExit(f"a fork server already listens on {self.path}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        umask = os.umask(0o177)  # created 0600: only this user may ask for a run process
        try:
            listener.bind(self.path)
        finally:
            os.umask(umask)
        listener.listen(64)
        listener.setblocking(False)
        return listener

    def _close_listener(self) -> None:
        if self.listener.fileno() == -1:
            return
        self.selector.unregister(self.listener)
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _on_accept(self, listener: socket.socket, _: None) -> None:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        self.selector.register(conn, selectors.EVENT_READ, ("request", None))

    def _on_signal(self, wakeup: int, _: None) -> None:
        os.read(wakeup, 64)
        if self.stopping:  # the second stop signal: exit now, the kernel kills the children
            logger.warning("fork server %d: stopping now, with %d run(s) still running",
                           self.pid, len(self.children))
            raise SystemExit(1)
        self.stopping = True
        self._close_listener()
        logger.info("fork server %d: stopping once its %d run(s) have exited", self.pid,
                    len(self.children))

    def _on_request(self, conn: socket.socket, _: None) -> Request | None:
        self.selector.unregister(conn)
        try:
            message, fds = receive_message(conn, max_fds=3)
        except (OSError, ValueError) as error:
            logger.warning("fork server %d: unreadable request (%s)", self.pid, error)
            conn.close()
            return None
        if message is None:
            conn.close()
            return None
        try:
            request = Request.parse(message, fds)
        except ValueError as error:
            for fd in fds:
                os.close(fd)
            self._refuse(conn, str(error))
            return None
        reason = self._cannot_serve(request, conn)
        if reason:
            request.close()
            self._refuse(conn, reason)
            return None
        return self._fork(conn, request)

    def _cannot_serve(self, request: Request, conn: socket.socket) -> str | None:
        if request.executable != sys.executable:
            return f"it runs {sys.executable}, not {request.executable}"
        if interpreter_environment(request.env) != self.python_env:
            return "the PYTHON* environment differs from the fork server's"
        # Never fork with threads or with a connection of a preloaded module (module docstring).
        threads = thread_count()
        if threads != 1:
            logger.error("fork server %d has %d threads; not forking", self.pid, threads)
            return f"the fork server has {threads} threads"
        unknown = open_fds() - self._own_fds(conn, request)
        if unknown:
            logger.error("fork server %d has unexpected open fds %s; not forking", self.pid,
                         sorted(unknown))
            return "the fork server holds unexpected file descriptors"
        return None

    def _own_fds(self, conn: socket.socket, request: Request) -> set[int]:
        registered = {key.fd for key in self.selector.get_map().values()}
        return {0, 1, 2, self.selector.fileno(), self.wakeup_w, conn.fileno(),
                *registered, *request.fds.values(), *self.inherited_fds}

    def _refuse(self, conn: socket.socket, reason: str) -> None:
        logger.warning("fork server %d: refused a run process: %s", self.pid, reason)
        with contextlib.suppress(OSError):
            send_message(conn, {"error": reason})
        conn.close()

    def _fork(self, conn: socket.socket, request: Request) -> Request | None:
        sys.stdout.flush()
        sys.stderr.flush()
        gc.freeze()
        try:
            pid = os.fork()
        except OSError as error:  # out of processes or memory: this run starts cold
            request.close()
            self._refuse(conn, f"fork failed: {error}")
            return None
        if pid == 0:
            self._become_child(conn, request)
            return request
        request.close()
        pidfd = os.pidfd_open(pid)
        child = Child(pid=pid, pidfd=pidfd, conn=conn, flow_run_id=request.flow_run_id)
        self.children[pid] = child
        self.selector.register(pidfd, selectors.EVENT_READ, ("exit", child))
        try:
            send_message(conn, {"pid": pid}, [pidfd])
        except OSError:
            self._on_launcher_gone(child)
            return None
        # A launcher sends nothing more: its connection turns readable when it closes.
        self.selector.register(conn, selectors.EVENT_READ, ("launcher", child))
        logger.info("fork server %d forked pid %d for flow run %s (threads at fork: 1)",
                    self.pid, pid, child.flow_run_id)
        return None

    def _on_launcher(self, conn: socket.socket, child: Child) -> None:
        try:
            if conn.recv(1):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self._on_launcher_gone(child)

    def _on_launcher_gone(self, child: Child) -> None:
        logger.warning("fork server %d: the launcher of pid %d (flow run %s) is gone; "
                       "killing the run process", self.pid, child.pid, child.flow_run_id)
        self._drop_connection(child)
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(child.pidfd, signal.SIGKILL)

    def _drop_connection(self, child: Child) -> None:
        if child.conn is None:
            return
        with contextlib.suppress(KeyError):
            self.selector.unregister(child.conn)
        child.conn.close()
        child.conn = None

    def _on_exit(self, pidfd: int, child: Child) -> None:
        _, status = os.waitpid(child.pid, 0)
        self.selector.unregister(pidfd)
        os.close(pidfd)
        del self.children[child.pid]
        if child.conn is not None:
            with contextlib.suppress(OSError):
                send_message(child.conn, {"status": status})
            self._drop_connection(child)

    def _become_child(self, conn: socket.socket, request: Request) -> None:
        """Turn this forked process into the run process `request` asks for."""
        os.setsid()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != self.pid:  # the fork server died before prctl took effect
            os._exit(1)
        signal.set_wakeup_fd(-1)
        for sig, handler in self.saved_handlers.items():
            signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        for key in list(self.selector.get_map().values()):
            if isinstance(key.fileobj, socket.socket):
                key.fileobj.close()  # this process's copy; the socket file stays the server's
            else:
                os.close(key.fd)
        self.selector.close()
        os.close(self.wakeup_w)
        conn.close()
        self.children.clear()
        for target in (0, 1, 2):
            source = request.fds.pop(target, None)
            if source is None:
                source = os.open(os.devnull, os.O_RDWR)
            os.dup2(source, target)
            os.close(source)
        # As the worker's close_fds would: nothing but 0, 1 and 2 stays open.
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.environ.clear()
        os.environ.update(request.env)
        os.chdir(request.cwd)
        os.umask(request.umask)
        lower_priority()
        if sys.path and sys.path[0] == self.startup_cwd:
            sys.path[0] = request.cwd  # as `python -m` puts the working directory first
        sys.argv = [ENGINE_MODULE, *request.argv]
        refresh_settings()


def refresh_settings() -> None:
    """Rebuild what Prefect and ConnectHub read from the environment at import."""
    from prefect.context import refresh_global_settings_context
    from prefect.logging import configuration
    from prefect.settings import get_current_settings

    get_settings.cache_clear()
    inherited = get_current_settings()
    refresh_global_settings_context()
    # Prefect configures logging from its settings and the PREFECT_LOGGING_* variables (the
    # settings hold those too): with the fork server's settings, doing it again changes nothing.
    if get_current_settings() != inherited:
        configuration.setup_logging(incremental=False)


def run_engine() -> None:
    """Run what `python -m prefect.engine` runs; this process then exits as that one would."""
    # prefect.flow_engine imports prefect.engine, so runpy finds the module imported already,
    # as it would not under `python -m`; its warning about that says nothing here.
    warnings.filterwarnings(
        "ignore", message=r"'prefect\.engine' found in sys\.modules", category=RuntimeWarning
    )
    runpy.run_module(ENGINE_MODULE, run_name="__main__", alter_sys=True)


def _wake_only(_signum: int, _frame: object) -> None:
    """Stop signals are handled by the server loop, which the wakeup fd wakes."""


def main() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    inherited_fds = open_fds() - {0, 1, 2}
    preload()
    check_server_version()
    threads = thread_count()
    if threads != 1:
        raise SystemExit(f"fork server: {threads} threads after the imports; not serving")
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError as error:
        raise SystemExit(
            f"fork server: pidfds are unavailable ({error}); needs Linux 5.3+"
        ) from None
    request = ForkServer(socket_path(), inherited_fds).serve()
    if request is not None:
        run_engine()


if __name__ == "__main__":
    main()
