"""Runs that wait or never start, with a real Prefect server and real workers.

A run of a busy job (concurrency limit 1) shows as QUEUED while Prefect holds it, and starts
within seconds of the slot freeing (ConnectHub's servers wait 2 s between tries, Prefect's
default 30 s). A run the worker could not submit (the Prefect API answered 503 while the worker
labelled it: "Failed to submit flow run to infrastructure") is started again once, and runs once.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from uuid import UUID

import pytest

from connecthub.db import joblog
from connecthub.jobs.vocabulary import RunStatus
from deployments.client import prefect_client
from deployments.reconcile import RESUBMIT_TAG_PREFIX, Reconciler, reconcile_flow_runs
from deployments.runs import run_now, wait_for_final
from deployments.sync import sync_job
from tests.support.http import FaultyProxy
from tests.support.jobs import logs_of, save, wait_pid
from tests.support.processes import start_worker, stop_process
from tests.support.settings import use_settings


def state_time(flow_run_id: str, state_type: str) -> float:
    with prefect_client() as client:
        states = client.read_flow_run_states(UUID(flow_run_id))
    return min(state.timestamp.timestamp() for state in states if state.type.value == state_type)


def test_a_queued_run_shows_queued_and_starts_soon_after_the_slot_frees(
    pg_env: None, worker: Path, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    save("queue.busy", handler="tests.plugins.jobs:SleepJob", concurrency_limit=1,
         public_cfg={"seconds": 6, "pid_file": str(pid_file)})
    first = run_now("queue.busy")
    wait_pid(pid_file)
    second = run_now("queue.busy")
    # While the first holds the job's only slot, Prefect holds the second: JobLog says so.
    deadline = time.monotonic() + 30
    while joblog.find_attempt(second.flow_run_id, 1).status != RunStatus.QUEUED:
        assert time.monotonic() < deadline, "the second run never showed as QUEUED"
        reconcile_flow_runs([second.flow_run_id])
        time.sleep(0.3)
    assert wait_for_final(first.id, timeout_seconds=90).status == "SUCCESS"
    assert wait_for_final(second.id, timeout_seconds=90).status == "SUCCESS"
    waited = state_time(second.flow_run_id, "RUNNING") - state_time(first.flow_run_id, "COMPLETED")
    # Prefect's default would be about 30 s; here the slot wait, a poll and a process start.
    assert 0 < waited < 10, f"the queued run started {waited:.1f} s after the slot freed"


def test_a_run_that_was_never_submitted_is_started_again_once(
    pg_env: None, prefect_server: str, session_dir: Path, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Its own work pool, served only by a worker behind a proxy that answers the first labels
    # call of a flow run with 503, and a worker that does not retry it (Prefect's client would
    # retry a 503 five times over about a minute, the worker giving up only after the last).
    use_settings(monkeypatch, CONNECTHUB_WORK_POOL="connecthub-resubmit")
    marker = tmp_path / "ran"
    save("resubmit.once", handler="tests.plugins.jobs:SleepJob",
         public_cfg={"seconds": 0, "pid_file": str(marker)})
    assert sync_job("resubmit.once").error is None
    labelled: set[str] = set()

    def first_labels_call(method: str, path: str) -> bool:
        match = re.search(r"/flow_runs/([0-9a-f-]{36})/labels$", path)
        if method != "PATCH" or match is None or labelled:
            return False
        labelled.add(match.group(1))
        return True

    upstream = prefect_server.removesuffix("/api")
    with FaultyProxy(upstream, first_labels_call) as proxy:
        env = {**os.environ, "PREFECT_API_URL": f"{proxy.url}/api",
               "PREFECT_CLIENT_MAX_RETRIES": "0"}
        worker = start_worker(session_dir / "resubmit-worker.log", env)
        try:
            started = run_now("resubmit.once")
            with prefect_client() as client:
                deadline = time.monotonic() + 60
                while not client.read_flow_run(UUID(started.flow_run_id)).state.is_crashed():
                    assert time.monotonic() < deadline, "the worker never failed the submission"
                    time.sleep(0.3)
                crashed = client.read_flow_run(UUID(started.flow_run_id))
            assert crashed.run_count == 0 and not marker.exists()  # nothing ran
            assert proxy.failed and "Failed to submit flow run" in crashed.state.message

            # Two passes (two loops, or one loop twice): one resubmission.
            Reconciler().run_once()
            Reconciler().run_once()
            rows = logs_of("resubmit.once")
            assert len(rows) == 2, rows
            again, first = rows
            assert first.id == started.id and first.status == "CRASHED"
            assert "Nothing ran; ConnectHub started it again" in (first.error or "")
            assert again.retry_of == first.id and again.trigger == "manual"
            final = wait_for_final(again.id, timeout_seconds=90)
            assert final.status == "SUCCESS" and marker.exists()
        finally:
            stop_process(worker)
    with prefect_client() as client:
        resubmitted = client.read_flow_run(UUID(again.flow_run_id))
    assert f"{RESUBMIT_TAG_PREFIX}{started.flow_run_id}" in resubmitted.tags
    assert [row.status for row in logs_of("resubmit.once")] == ["SUCCESS", "CRASHED"]
