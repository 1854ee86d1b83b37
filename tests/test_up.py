"""`connecthub up` as a user runs it: everything starts, runs the example, and stops cleanly;
its Prefect server answers no API call without the auth string `up` generated into DATA_DIR,
which ConnectHub's own processes and CLI use."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import free_port, processes_with_env

pytestmark = pytest.mark.engine


def start_up(data_dir: Path, *extra: str) -> tuple[subprocess.Popen[str], int, int]:
    env = {
        key: value for key, value in os.environ.items()
        if key not in ("DB_URL", "FERNET_KEY_PATH", "PREFECT_API_URL", "PREFECT_HOME",
                       "ADMIN_PASSWORD", "SESSION_SECRET", "DATA_DIR")
    }
    env["CONNECTHUB_UP_TEST_MARKER"] = str(data_dir)
    port, prefect_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "connecthub.app.cli", "up", "--data-dir", str(data_dir),
         "--port", str(port), "--prefect-port", str(prefect_port), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    return process, port, prefect_port


def read_until(process: subprocess.Popen[str], text: str, timeout: float = 150) -> str:
    seen = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line:
            seen.append(line)
            if text in line:
                return "".join(seen)
        elif process.poll() is not None:
            break
        else:
            time.sleep(0.2)
    raise AssertionError(f"never printed {text!r}:\n{''.join(seen)}")


def test_up_runs_the_example_and_stops_every_child(tmp_path: Path):
    data_dir = tmp_path / "data"
    process, port, prefect_port = start_up(data_dir, "--with-example")
    try:
        banner = read_until(process, "Press Ctrl-C to stop.")
        assert f"http://127.0.0.1:{port}/admin" in banner
        assert f"http://127.0.0.1:{prefect_port}" in banner
        assert f"password in {data_dir}" in banner or "admin-password" in banner
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{prefect_port}/api/health").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{prefect_port}/").status_code == 200  # the UI
        assert (data_dir / "admin-password").stat().st_mode & 0o777 == 0o600

        # The Prefect API refuses a caller without the auth string `up` generated ...
        auth_file = data_dir / "prefect-auth-string"
        assert auth_file.stat().st_mode & 0o777 == 0o600
        assert f"password in {auth_file}" in banner
        api = f"http://127.0.0.1:{prefect_port}/api"
        assert httpx.post(f"{api}/flow_runs/filter", json={}).status_code == 401
        wrong = httpx.post(f"{api}/flow_runs/filter", json={}, auth=("", "guess"))
        assert wrong.status_code == 401
        # ... while ConnectHub, which reads it from DATA_DIR, syncs (the example), runs, retries.
        cli = [sys.executable, "-m", "connecthub.app.cli"]
        env = {key: value for key, value in os.environ.items()
               if key not in ("PREFECT_API_AUTH_STRING", "PREFECT_SERVER_API_AUTH_STRING")}
        env.update(DATA_DIR=str(data_dir), DB_URL="", PREFECT_API_URL=api,
                   FERNET_KEY_PATH=str(data_dir / "fernet.key"))
        run = subprocess.run(
            [*cli, "run", "example.hello", "--wait", "--timeout", "120"],
            env=env, capture_output=True, text=True, timeout=180,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "SUCCESS" in run.stdout
        log_id = run.stdout.split("JobLog #", 1)[1].split()[0]
        again = subprocess.run(
            [*cli, "retry", log_id, "--wait", "--timeout", "120"],
            env=env, capture_output=True, text=True, timeout=180,
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert "SUCCESS" in again.stdout
        assert len(processes_with_env(str(data_dir))) >= 4
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 0
    deadline = time.monotonic() + 10
    while processes_with_env(str(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_with_env(str(data_dir)) == []


# Prefect's worker, as `connecthub worker` starts it (deployments.worker.worker_argv).
PREFECT_WORKER_ARGV = b"deployments.prefect_worker\x00worker\x00start"


def test_a_dead_child_stops_everything_with_its_name(tmp_path: Path):
    data_dir = tmp_path / "data"
    process, _port, _prefect_port = start_up(data_dir)
    try:
        read_until(process, "Press Ctrl-C to stop.")
        workers = [
            pid for pid in processes_with_env(str(data_dir))
            if PREFECT_WORKER_ARGV in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert workers, "the worker process was not found"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1
    assert "error: worker exited" in output
    deadline = time.monotonic() + 10
    while processes_with_env(str(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_with_env(str(data_dir)) == []
