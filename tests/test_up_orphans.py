"""`connecthub up` never orphans: stopped through `| tee` with Ctrl-C (SIGINT to the whole
pipeline, so the pipe closes under it), or killed with SIGKILL, it leaves no process behind;
and a second `up` on the same data directory or ports says what holds them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.processes import free_port, processes_with_env

pytestmark = pytest.mark.engine
CLI = f"{sys.executable} -m connecthub.app.cli"


def clean_env(data_dir: Path) -> dict[str, str]:
    env = {
        key: value for key, value in os.environ.items()
        if key not in ("DB_URL", "FERNET_KEY_PATH", "PREFECT_API_URL", "PREFECT_HOME",
                       "ADMIN_PASSWORD", "SESSION_SECRET", "DATA_DIR")
    }
    env["CONNECTHUB_UP_TEST_MARKER"] = str(data_dir)
    return env


def wait_for_text(path: Path, text: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text(errors="replace") if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.3)
    raise AssertionError(f"never saw {text!r} in {path}:\n{content[-3000:]}")


def assert_nothing_left(data_dir: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while processes_with_env(str(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.3)
    left = processes_with_env(str(data_dir))
    for pid in left:  # do not leak them into the other tests, but fail
        os.kill(pid, signal.SIGKILL)
    assert left == [], "processes left behind"


def test_up_piped_to_tee_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    log = tmp_path / "up.log"
    port, prefect_port = free_port(), free_port()
    pipeline = subprocess.Popen(
        ["bash", "-c", f"{CLI} up --data-dir {data_dir} --port {port} --prefect-port "
                       f"{prefect_port} 2>&1 | tee {log}"],
        env=clean_env(data_dir), start_new_session=True, stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_text(log, "Press Ctrl-C to stop.")
        # A second `up` on the same data dir names the first; on its ports, the holder.
        second = subprocess.run(
            [*CLI.split(), "up", "--data-dir", str(data_dir), "--port", str(free_port()),
             "--prefect-port", str(free_port())],
            env=clean_env(tmp_path / "other-marker"), capture_output=True, text=True,
            timeout=120,
        )
        assert second.returncode == 1
        assert "in use by another `connecthub up` (pid" in second.stderr
        third = subprocess.run(
            [*CLI.split(), "up", "--data-dir", str(tmp_path / "data2"), "--port", str(port),
             "--prefect-port", str(free_port())],
            env=clean_env(tmp_path / "data2"), capture_output=True, text=True, timeout=120,
        )
        assert third.returncode == 1
        assert f"port {port} for the admin is in use by pid" in third.stderr
        os.killpg(pipeline.pid, signal.SIGINT)  # Ctrl-C: `up` and `tee` both get it
        pipeline.wait(timeout=90)
    finally:
        if pipeline.poll() is None:
            os.killpg(pipeline.pid, signal.SIGKILL)
    assert_nothing_left(data_dir)
    assert_nothing_left(tmp_path / "data2")


def test_kill_9_of_up_leaves_no_process(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen(
            [*CLI.split(), "up", "--data-dir", str(data_dir), "--port", str(free_port()),
             "--prefect-port", str(free_port())],
            env=clean_env(data_dir), stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for_text(log, "Press Ctrl-C to stop.")
        assert len(processes_with_env(str(data_dir))) >= 5  # up, reaper, server, worker, ...
        up.kill()
        up.wait(timeout=10)
    finally:
        if up.poll() is None:
            up.kill()
    assert_nothing_left(data_dir)
