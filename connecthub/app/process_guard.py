"""What keeps `connecthub up` from leaving processes behind, or from starting twice.

- `die_with_parent`: a `preexec_fn` that asks Linux to send the child SIGTERM when `up` dies,
  however it dies (PR_SET_PDEATHSIG), so even `kill -9` of `up` stops its children.
- `Reaper`: a small process of its own session that learns each child's process group from
  `up` over a pipe and, when the pipe closes (`up` exited or was killed), stops those groups:
  SIGTERM, then SIGKILL after `REAPER_GRACE_SECONDS`. It catches what PR_SET_PDEATHSIG cannot:
  the grandchildren (a flow run under the worker, the Prefect server's own processes).
- `DataDirLock`: an exclusive flock on DATA_DIR/up.lock holding the pid and ports of the `up`
  that owns the data directory, so a second `up` names the one in its way.
- `port_holder`: which process listens on a port (from /proc), for the "port in use" message.
- `quiet_on_broken_pipe`: `up | tee` then Ctrl-C kills `tee` too; writing the "stopping"
  lines to the closed pipe must not abort the shutdown, so output goes to /dev/null from then.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

PR_SET_PDEATHSIG = 1
REAPER_GRACE_SECONDS = 5.0

# The reaper's whole program: read process group ids until EOF, then stop those groups.
_REAPER = f"""
import os, signal, sys, time
groups = [int(line) for line in sys.stdin if line.strip()]
def alive(group):
    try:
        os.killpg(group, 0)
    except OSError:
        return False
    return True
for sig, wait in ((signal.SIGTERM, {REAPER_GRACE_SECONDS}), (signal.SIGKILL, 0)):
    for group in groups:
        try:
            os.killpg(group, sig)
        except OSError:
            pass
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(alive(group) for group in groups):
        time.sleep(0.1)
"""


def die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Reaper:
    """Stops every registered process group once this process is gone."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _REAPER], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )

    def watch(self, pgid: int) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(f"{pgid}\n".encode())
        self._process.stdin.flush()

    def close(self) -> None:
        """After a clean stop: the groups are gone; let the reaper check and exit."""
        assert self._process.stdin is not None
        with contextlib.suppress(OSError):
            self._process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=REAPER_GRACE_SECONDS + 5)


class DataDirInUseError(RuntimeError):
    pass


class DataDirLock:
    """An exclusive lock on `data_dir/up.lock`, recording who holds it."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "up.lock"
        self._file = None

    def acquire(self, **details: object) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "{}"
            handle.close()
            raise DataDirInUseError(self._describe(json.loads(holder))) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), **details}))
        handle.flush()
        self._file = handle

    def _describe(self, holder: dict[str, object]) -> str:
        ports = ", ".join(f"{key} {value}" for key, value in holder.items() if key != "pid")
        return (
            f"{self.path.parent} is in use by another `connecthub up` (pid "
            f"{holder.get('pid', '?')}{', ' + ports if ports else ''}): stop it first, or pass "
            "another --data-dir"
        )

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines, None)
            for line in lines:
                fields = line.split()
                # local_address is HEXIP:HEXPORT; state 0A is LISTEN.
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    inodes.add(fields[9])
    return inodes


def port_holder(port: int) -> str | None:
    """'pid N (command line)' of the process listening on `port`, when /proc can tell."""
    inodes = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                        errors="replace"
                    )
                    return f"pid {proc.name} ({argv.strip()[:120]})"
    return None


def quiet_on_broken_pipe(say: Callable[[str], None]) -> Callable[[str], None]:
    """`say`, but once stdout is a closed pipe: stdout and stderr go to /dev/null instead."""

    def safe_say(message: str) -> None:
        try:
            say(message)
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.dup2(devnull, sys.stderr.fileno())
            os.close(devnull)

    return safe_say
