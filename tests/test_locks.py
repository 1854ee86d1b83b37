"""`named_lock`: one holder per name across processes, on PostgreSQL and on a SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from connecthub.db.locks import named_lock
from tests.support.processes import REPO_ROOT

HOLDER = """
import pathlib, sys, time
from connecthub.db.locks import named_lock
with named_lock(sys.argv[1]):
    pathlib.Path(sys.argv[2]).write_text("held")
    while not pathlib.Path(sys.argv[3]).exists():
        time.sleep(0.05)
"""
BLOCKED_SECONDS = 1.5  # how long the other process's holder must keep this one out


def _wait_for(path: Path, holder: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert holder.poll() is None, "the holder exited before taking the lock"
        assert time.monotonic() < deadline, "the holder did not take the lock"
        time.sleep(0.05)


def _check_one_holder(tmp_path: Path) -> None:
    held, release = tmp_path / "held", tmp_path / "release"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, "sync-deployment:a", str(held),
                               str(release)], env=env, cwd=REPO_ROOT)
    try:
        _wait_for(held, holder)
        with named_lock("sync-deployment:b"):  # another name is free meanwhile
            pass
        acquired = threading.Event()

        def take() -> None:
            with named_lock("sync-deployment:a"):
                acquired.set()

        taker = threading.Thread(target=take)
        taker.start()
        assert not acquired.wait(BLOCKED_SECONDS), "taken while another process held it"
        release.touch()
        assert acquired.wait(30), "not taken once the other process let it go"
        taker.join(30)
        assert holder.wait(30) == 0
    finally:
        release.touch()
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_one_holder_at_a_time_on_postgresql(pg_env: None, tmp_path: Path) -> None:
    _check_one_holder(tmp_path)


def test_one_holder_at_a_time_on_a_sqlite_file(sqlite_env: Path, tmp_path: Path) -> None:
    _check_one_holder(tmp_path)
    locks = sqlite_env / "connecthub.db.locks"
    assert locks.is_dir() and oct(locks.stat().st_mode & 0o777) == "0o700"
