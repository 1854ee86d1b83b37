"""The work pool's command: start one flow run as a process forked from the warm fork server.

`python -m deployments.launcher` stands where `python -m prefect.engine` stood in the pool's
job template. It is the process the Prefect worker started, watches and signals, so it owns
making the forked run process look to the worker exactly like a child it started itself:

- it connects to the fork server (`deployments.forkserver`) on a Unix socket at
  CONNECTHUB_FORKSERVER_SOCKET (default `<DATA_DIR>/forkserver.sock`), sends its argv, working
  directory, umask and environment, and passes its stdin, stdout and stderr, so the run's
  output goes straight into the worker's pipes;
- it gets back the run process's pid and a pidfd of it, and forwards to that process every
  signal the worker may send (SIGTERM for a cancellation or shutdown, SIGINT, ...); the pidfd
  makes that safe against pid reuse and keeps working when the fork server is gone;
- it exits as the run process did: with its exit code, or killed by the same signal (the worker
  reads a negative return code, e.g. -9 or -15, and proposes Crashed for anything but 0).
  If the launcher itself is killed, the fork server sees the connection close and kills the run
  process; if the fork server dies, the kernel kills the run process (PR_SET_PDEATHSIG) and the
  launcher exits killed by SIGKILL, so the worker marks the run Crashed either way.

When the fork server is not there, refuses, or cannot serve this environment, the launcher
writes one warning line to stderr and execs `python -m prefect.engine` in its place: a run never
fails because the fork server is down, it only starts cold. With warm start turned off
(CONNECTHUB_FORKSERVER_SOCKET=off, from CONNECTHUB_WARM_START=false) it execs the engine at once.

Run processes run at the lowest CPU priority (`lower_priority`): the launcher lowers its own,
which a cold engine keeps, and the fork server lowers each child's. When runs take both cores
(40 jobs starting at the same second on the embedded mode's two cores) the Prefect server, the
worker and the admin are served first, so every run's state change is answered at once instead
of queueing behind the bodies of the runs that already started; on an idle machine nothing
changes. A run process leads a session of its own, and with the kernel's autogroup scheduling
(on by default in most distributions) CPU is shared between sessions before niceness orders the
processes inside one: forty run sessions took forty shares against the Prefect server's one, so
the session's own niceness (/proc/self/autogroup) is lowered too.

Why this shape: the worker keeps doing what it does for any process (states, crash detection,
cancellation, limits), and only the start of the run process changes. A run started as a new
`python -m prefect.engine` used 2.2 CPU-s here, a forked one 0.6 (figures in
`deployments/forkserver.py`); the launcher imports the standard library only (0.035 CPU-s), so
the saving is not spent again on starting it.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import resource
import select
import signal
import socket
import sys

SOCKET_ENV = "CONNECTHUB_FORKSERVER_SOCKET"
SOCKET_NAME = "forkserver.sock"
# CONNECTHUB_FORKSERVER_SOCKET=off: warm start is turned off; runs start cold, quietly.
WARM_START_OFF = "off"
ENGINE_MODULE = "prefect.engine"
# A run process's niceness, and its session's: the lowest priority (see above).
RUN_NICENESS = 19
# The largest request or reply; a SOCK_SEQPACKET message is read whole.
MAX_MESSAGE = 1 << 20
# Signals a worker, a supervisor or a terminal may send to a run process. SIGKILL cannot be
# forwarded: the fork server sees this launcher's connection close and kills the run process.
FORWARDED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
# How long the run process may outlive a vanished fork server before the launcher kills it.
ORPHAN_GRACE_SECONDS = 5.0
# A fork server that has not forked by then is wedged: start cold instead. (Should it fork
# later, its reply finds this connection closed and it kills that child at once.)
START_TIMEOUT_SECONDS = 10.0


def socket_path() -> str:
    """Where the fork server listens; the fork server and the launcher both ask this."""
    path = os.environ.get(SOCKET_ENV)
    if path:
        return path
    return os.path.join(os.environ.get("DATA_DIR") or "data", SOCKET_NAME)


class Unavailable(Exception):
    """The fork server cannot start this run; the launcher starts a fresh interpreter."""


def send_message(sock: socket.socket, message: dict[str, object], fds: list[int] | None = None
                 ) -> None:
    """Send one JSON message (one SOCK_SEQPACKET packet), with `fds` attached."""
    data = json.dumps(message).encode()
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sock.sendmsg([data], ancillary)


def receive_message(sock: socket.socket, max_fds: int = 0) -> tuple[dict | None, list[int]]:
    """One JSON message and the fds attached to it; (None, []) when the peer closed."""
    data, fds, flags, _ = socket.recv_fds(sock, MAX_MESSAGE, max_fds)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in fds:
            os.close(fd)
        raise ValueError("message or its file descriptors were truncated")
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    return json.loads(data), fds


class Launcher:
    def __init__(self) -> None:
        self.pidfd: int | None = None
        # Signals that arrived before the run process existed, forwarded once it does.
        self.pending: list[int] = []

    def on_signal(self, signum: int, _frame: object) -> None:
        if self.pidfd is None:
            self.pending.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):  # exited: its status is on the way
            signal.pidfd_send_signal(self.pidfd, signum)

    def start(self, sock: socket.socket) -> int:
        """Ask the fork server for the run process; return its pid."""
        stdio = [fd for fd in (0, 1, 2) if is_open(fd)]
        umask = os.umask(0o022)
        os.umask(umask)
        request = {
            "argv": sys.argv[1:],
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            "fds": stdio,
            "executable": sys.executable,
            "umask": umask,
        }
        try:
            send_message(sock, request, stdio)
            reply, fds = receive_message(sock, max_fds=1)
        except (OSError, ValueError) as error:
            raise Unavailable(f"the fork server did not answer ({error})") from None
        if reply is None or "pid" not in reply or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            reason = (reply or {}).get("error", "it closed the connection")
            raise Unavailable(f"the fork server refused: {reason}")
        sock.settimeout(None)  # the run takes as long as it takes
        self.pidfd = fds[0]
        for signum in self.pending:
            self.on_signal(signum, None)
        self.pending.clear()
        return int(reply["pid"])

    def wait(self, sock: socket.socket) -> int:
        """The run process's wait status, as the fork server reports it."""
        try:
            reply, _ = receive_message(sock)
        except (OSError, ValueError):
            reply = None
        if reply is not None and "status" in reply:
            return int(reply["status"])
        return self._wait_orphan()

    def _wait_orphan(self) -> int:
        """The fork server is gone: the kernel kills the run process; wait until it has."""
        assert self.pidfd is not None
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        if not poller.poll(ORPHAN_GRACE_SECONDS * 1000):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            poller.poll()
        print(
            "connecthub launcher: the fork server exited during the run; "
            "the flow run process was killed with it",
            file=sys.stderr, flush=True,
        )
        return signal.SIGKILL  # the wait status of a process killed by SIGKILL


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def exit_like(status: int) -> None:
    """Exit with the run process's exit code, or die of the signal that killed it."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        os._exit(code)
    signum = -code
    # The run process already dumped core if it was going to; the launcher must not.
    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    if signum in FORWARDED_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # a signal whose default action is not to terminate


def exec_engine(reason: str, pending: list[int]) -> None:
    """Become `python -m prefect.engine` with this process's argv and environment."""
    print(f"connecthub launcher: {reason}; starting a fresh interpreter", file=sys.stderr,
          flush=True)
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    for signum in pending:  # what the run would have received had it started cold
        os.kill(os.getpid(), signum)
    os.execv(sys.executable, [sys.executable, "-m", ENGINE_MODULE, *sys.argv[1:]])


def lower_priority() -> None:
    """Give this run process, and its session when it leads one, RUN_NICENESS."""
    os.nice(RUN_NICENESS - os.nice(0))
    if os.getsid(0) == os.getpid():  # else the session, and its priority, are the worker's
        with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(RUN_NICENESS))


def main() -> None:
    lower_priority()
    if os.environ.get(SOCKET_ENV) == WARM_START_OFF:
        os.execv(sys.executable, [sys.executable, "-m", ENGINE_MODULE, *sys.argv[1:]])
    launcher = Launcher()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.settimeout(START_TIMEOUT_SECONDS)
    try:
        sock.connect(socket_path())
    except OSError as error:
        sock.close()
        exec_engine(f"no fork server at {socket_path()} ({error.strerror or error})", [])
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, launcher.on_signal)
    try:
        launcher.start(sock)
    except Unavailable as error:
        sock.close()
        exec_engine(str(error), launcher.pending)
    exit_like(launcher.wait(sock))


if __name__ == "__main__":
    main()
