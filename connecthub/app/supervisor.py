"""`connecthub up`: every part of ConnectHub on one machine, as child processes.

The embedded mode starts, in order, a local Prefect server (SQLite under DATA_DIR/prefect, unless
PREFECT_API_URL points at one already), a worker, the sync/reconcile loop and the admin, and
waits for each to be healthy before starting the next. Each child runs in its own process group
with its output in DATA_DIR/logs/<name>.log. SIGINT or SIGTERM stops the children in reverse
order, each with SIGTERM, then SIGTERM again (a Prefect worker turns the first one into a
SIGINT and may ignore it), then SIGKILL, so no process is left behind, even when stdout is a
pipe that closed (`up | tee`, Ctrl-C). If `up` itself dies, even by SIGKILL, its children and
their process groups are stopped too, and a second `up` on the same data directory or ports
says which process holds them (see `process_guard`). A child that exits on its
own is reported by name with the end of its log, the others are stopped, and `up` exits 1.
`run_embedded` is that whole sequence; the CLI command only parses its options.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import httpx

from connecthub.app.admin.auth import read_or_create_secret
from connecthub.app.process_guard import (
    DataDirInUseError,
    DataDirLock,
    Reaper,
    die_with_parent,
    port_holder,
    quiet_on_broken_pipe,
)
from connecthub.core.config import DEFAULT_PREFECT_PORT, get_settings
from connecthub.db.engine import get_engine, reset_engine
from connecthub.db.migrate import upgrade

STOP_GRACE_SECONDS = 10.0
START_TIMEOUT_SECONDS = 120.0


class StartupError(RuntimeError):
    """A part did not start; the message names it."""


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    health_url: str | None = None
    # Ready once this text appears in its log (for children with no health endpoint).
    ready_text: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent,
            )

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM, SIGTERM again, then SIGKILL, to the child's whole process group."""
        if self.process is None:
            return
        steps = ((signal.SIGTERM, grace), (signal.SIGTERM, grace / 2), (signal.SIGKILL, 5.0))
        for sig, wait in steps:
            if self.process.poll() is not None:
                break
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        # The group may hold grandchildren (a flow run under the worker) that outlived the leader.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class Supervisor:
    """Starts children in order, watches them, and stops them all on a signal or a death."""

    def __init__(self, say: Callable[[str], None] = print) -> None:
        self.children: list[Child] = []
        self.say = say
        self._stopping = False
        self.reaper = Reaper()

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stopping = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_signal)  # the terminal closed

    def start(self, child: Child, timeout: float = START_TIMEOUT_SECONDS) -> None:
        self.say(f"starting {child.name} ...")
        began = time.monotonic()
        child.start()
        self.children.append(child)
        assert child.process is not None
        self.reaper.watch(child.process.pid)  # its process group, led by the child
        deadline = began + timeout
        while True:
            if self._stopping:
                raise KeyboardInterrupt
            code = child.exited()
            if code is not None:
                raise StartupError(
                    f"{child.name} exited with status {code} while starting; the end of "
                    f"{child.log_path}:\n{child.log_tail()}"
                )
            if _ready(child):
                break
            if time.monotonic() > deadline:
                raise StartupError(
                    f"{child.name} was not ready after {timeout:.0f} s; "
                    f"the end of {child.log_path}:\n{child.log_tail()}"
                )
            time.sleep(0.3)
        self.say(f"  {child.name} ready ({time.monotonic() - began:.1f} s)")

    def watch(self) -> Child | None:
        """Block until a signal (returns None) or a child's exit (returns that child)."""
        while not self._stopping:
            for child in self.children:
                if child.exited() is not None:
                    return child
            time.sleep(0.5)
        return None

    def stop_all(self) -> None:
        for child in reversed(self.children):
            if child.exited() is None:
                self.say(f"stopping {child.name} ...")
            child.stop()
        self.reaper.close()


def _ready(child: Child) -> bool:
    if child.ready_text is not None and child.ready_text not in child.log_tail(200):
        return False
    if child.health_url is None:
        return True
    try:
        return httpx.get(child.health_url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def python_child(
    name: str,
    args: list[str],
    env: dict[str, str],
    log_dir: Path,
    *,
    health_url: str | None = None,
    ready_text: str | None = None,
) -> Child:
    """A child running this Python with `args`, logging to `log_dir/<name>.log`."""
    log_path = log_dir / f"{name}.log"
    return Child(name, [sys.executable, *args], env, log_path, health_url, ready_text)


@dataclass(frozen=True)
class EmbeddedOptions:
    port: int = 8000
    prefect_port: int = DEFAULT_PREFECT_PORT
    host: str = "127.0.0.1"
    with_example: bool = False


def _check_ports(options: EmbeddedOptions, start_prefect: bool) -> None:
    wanted = [(options.port, "admin", "--port")]
    if start_prefect:
        wanted.append((options.prefect_port, "Prefect server", "--prefect-port"))
    for port, what, flag in wanted:
        if not port_free(options.host, port):
            holder = port_holder(port)
            raise StartupError(
                f"port {port} for the {what} is in use{' by ' + holder if holder else ''}: "
                f"stop it, or pick another port with {flag}"
            )


def _banner(options: EmbeddedOptions, log_dir: Path) -> str:
    from connecthub.app.admin.auth import load_credentials

    settings = get_settings()
    credentials = load_credentials(settings)
    password = (
        f"password in {credentials.password_file}" if credentials.password_file
        else "password from ADMIN_PASSWORD"
    )
    prefect_login = (
        f"  (password in {settings.prefect_auth_string_path})"
        if settings.prefect_api_auth_string is None and settings.prefect_auth_string_path.exists()
        else ""
    )
    return (
        "\nConnectHub is up.\n"
        f"  Admin:      http://{options.host}:{options.port}/admin  "
        f"(user {credentials.username}, {password})\n"
        f"  Prefect UI: {settings.ui_url}{prefect_login}\n"
        f"  Data:       {settings.data_dir.resolve()}  (logs in {log_dir})\n"
        "Press Ctrl-C to stop."
    )


def _start_prefect_server(supervisor: Supervisor, options: EmbeddedOptions, log_dir: Path) -> None:
    """The local Prefect server; from then on this process and its children use it."""
    from deployments.server import server_api_url, server_argv, server_environment
    from deployments.worker import worker_environment

    settings = get_settings()
    home = settings.data_dir / "prefect"
    # The server answers no API request without this (its UI asks for it once); every child
    # gets it through worker_environment(), and a CLI on the same DATA_DIR reads it there.
    auth_string = settings.prefect_auth_string or read_or_create_secret(
        settings.prefect_auth_string_path, lambda: secrets.token_urlsafe(24)
    )[0]
    env = server_environment(worker_environment(), home, options.prefect_port)
    env["PREFECT_SERVER_API_AUTH_STRING"] = auth_string
    supervisor.start(Child(
        "prefect-server", server_argv(options.prefect_port), env, log_dir / "prefect-server.log",
        health_url=f"{server_api_url(options.prefect_port)}/health",
    ))
    os.environ["PREFECT_API_URL"] = server_api_url(options.prefect_port)
    get_settings.cache_clear()


def _start_connecthub(supervisor: Supervisor, options: EmbeddedOptions, log_dir: Path) -> None:
    """The worker, the sync/reconcile loop and the admin, each once the one before is ready."""
    from deployments.worker import worker_environment

    env = worker_environment()
    cli = ["-m", "connecthub.app.cli"]
    supervisor.start(python_child("worker", [*cli, "worker"], env, log_dir, ready_text="started"))
    supervisor.start(python_child(
        "sync-loop", [*cli, "sync", "--loop"], env, log_dir, ready_text="loop every"
    ))
    supervisor.start(python_child(
        "admin", [*cli, "admin", "--host", options.host, "--port", str(options.port)], env,
        log_dir, health_url=f"http://{options.host}:{options.port}/healthz",
    ))


def run_embedded(options: EmbeddedOptions, say: Callable[[str], None] = print) -> None:
    """`connecthub up`: start every part, wait for a signal or a death, stop them all.

    Raises StartupError when a part cannot start or one dies; returns after a signal.
    """
    from connecthub.bootstrap import prepare

    get_settings.cache_clear()  # DATA_DIR may have just been set by the caller
    reset_engine()
    say = quiet_on_broken_pipe(say)
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_dir = settings.log_dir or settings.data_dir / "logs"
    start_prefect = not settings.prefect_api_url
    lock = DataDirLock(settings.data_dir)
    try:
        lock.acquire(admin_port=options.port, prefect_port=options.prefect_port)
    except DataDirInUseError as error:
        raise StartupError(str(error)) from None
    try:
        _check_ports(options, start_prefect)
        upgrade(get_engine())
        prepare()
        _supervise(options, say, log_dir, start_prefect)
    finally:
        lock.release()


def _supervise(
    options: EmbeddedOptions, say: Callable[[str], None], log_dir: Path, start_prefect: bool
) -> None:
    from connecthub.app.actors import cli_actor
    from connecthub.app.operations import apply_job_file

    supervisor = Supervisor(say=say)
    supervisor.install_signal_handlers()
    died = None
    try:
        if start_prefect:
            _start_prefect_server(supervisor, options, log_dir)
        if options.with_example:
            example = Path(str(resources.files("examples") / "jobs.yaml"))
            job_ids = apply_job_file(example, cli_actor(), warn=say)
            say(f"applied {len(job_ids)} job(s): {', '.join(job_ids)}")
        _start_connecthub(supervisor, options, log_dir)
        say(_banner(options, log_dir))
        died = supervisor.watch()
    except KeyboardInterrupt:
        pass
    finally:
        supervisor.stop_all()
    if died is not None:
        raise StartupError(
            f"{died.name} exited with status {died.exited()}; everything else was stopped. "
            f"See {died.log_path}"
        )
