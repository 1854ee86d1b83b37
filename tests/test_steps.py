"""Steps, run names and artifacts: what a ConnectHub run shows in the Prefect UI.

Without Prefect: `BaseJob.step` and `@step` only run their block outside a flow run, hand the
block to the context's step runner inside one (nesting, the step's logger), and a step name
never carries a secret. With a real Prefect server and worker: a run of `TypedJob` is named
`<job> · <time> · <trigger>`, its phases and the plugin's steps are task runs with their states,
parents and logs, a failing step is Failed with its error, the run carries a link artifact to
its JobLog page and a markdown artifact of its result, and the deployment's description links
the job in the admin.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import httpx
import pytest

from connecthub.core.config import get_settings
from connecthub.core.logging import secrets_masked
from connecthub.jobs.base import MAX_STEP_NAME, BaseJob, JobContext, step, step_name
from connecthub.jobs.vocabulary import RunStatus
from deployments.client import prefect_client
from deployments.runs import retry, run_now, wait_for_final
from deployments.sync import sync_job
from flows.execute_job import MAX_SUMMARY_CHARS, result_summary
from tests.plugins.typed import TypedJob
from tests.support.jobs import deployment, save

TYPED = "tests.plugins.typed:TypedJob"
PARAMS = {"target": "crm", "batch_size": 10}


# --- the contract, without Prefect ------------------------------------------------------------


class Recorder:
    """A step runner that records each step as (name, depth) and yields its own logger."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, int]] = []
        self.depth = 0

    @contextmanager
    def __call__(self, name: str) -> Iterator[logging.Logger]:
        self.steps.append((name, self.depth))
        self.depth += 1
        try:
            yield logging.getLogger(f"step.{name}")
        finally:
            self.depth -= 1


def run_typed(context: JobContext, **params: Any) -> Any:
    job = TypedJob(context)
    return job.run(TypedJob.validate_params({**PARAMS, **params}),
                   TypedJob.validate_secrets({"api_key": "key-1"}))


def test_outside_a_flow_run_steps_just_run() -> None:
    assert run_typed(JobContext(job_id="t")) == {"target": "crm", "rows": 3, "mode": "delta"}
    with pytest.raises(ValueError, match="cannot transform"):
        run_typed(JobContext(job_id="t"), fail_in_transform=True)


def test_steps_go_to_the_runner_nested_with_their_own_logger() -> None:
    recorder = Recorder()
    job = TypedJob(JobContext(job_id="t", step_runner=recorder))
    outer = job.logger
    with job.step("outer"):
        assert job.logger.name == "step.outer"
    assert job.logger is outer
    run_typed(JobContext(job_id="t", step_runner=recorder))
    assert recorder.steps == [
        ("outer", 0), ("fetch", 0), ("transform", 0), ("page 1", 1), ("push", 0),
    ]


def test_the_decorator_names_a_step_after_the_method() -> None:
    class Job(BaseJob):
        @step()
        def load_rows(self) -> int:
            return 7

    recorder = Recorder()
    assert Job(JobContext(job_id="t", step_runner=recorder)).load_rows() == 7
    assert recorder.steps == [("load rows", 0)]


def test_a_step_name_never_carries_a_secret() -> None:
    with secrets_masked({"token": "s3cr3t-value"}):
        assert step_name("send with s3cr3t-value\nnow") == "send with *** now"
    assert len(step_name("x" * 500)) == MAX_STEP_NAME
    assert step_name("  ") == "step"


def test_the_result_artifact_is_masked_and_cut() -> None:
    with secrets_masked({"token": "s3cr3t-value"}):
        short = result_summary(41, RunStatus.SUCCESS, {"echo": "s3cr3t-value"})
        long = result_summary(42, RunStatus.FAILED, "x" * (MAX_SUMMARY_CHARS + 500))
    assert short.startswith("**SUCCESS** (JobLog #41)")
    assert "s3cr3t-value" not in short and '"echo": "***"' in short
    assert "x" * MAX_SUMMARY_CHARS in long and "x" * (MAX_SUMMARY_CHARS + 1) not in long
    assert "(cut: JobLog #42 has all of it)" in long


# --- in a real flow run -----------------------------------------------------------------------


def prefect_api(path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = httpx.post(f"{get_settings().prefect_api_url}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def task_runs(flow_run_id: str, expected: int, timeout: float = 60) -> dict[str, dict[str, Any]]:
    """The flow run's task runs by name, once Prefect has recorded `expected` final ones
    (task runs reach the server as events, a moment after the run ends)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = prefect_api("/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
        final = [run for run in runs if run["state_type"] in ("COMPLETED", "FAILED")]
        if len(final) >= expected or time.monotonic() > deadline:
            return {run["name"]: run for run in runs}
        time.sleep(0.5)


def logs_of_task_run(task_run_id: str, awaited: str, timeout: float = 60) -> list[dict[str, Any]]:
    """The task run's logs, once one of them contains `awaited` or `timeout` has passed (logs
    reach the server through Prefect's batched log worker, apart from the task-run events)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = prefect_api("/logs/filter", {"logs": {"task_run_id": {"any_": [task_run_id]}}})
        if any(awaited in line["message"] for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.5)


def parent_of(runs: dict[str, dict[str, Any]], name: str) -> str | None:
    parents = runs[name]["task_inputs"].get("__parents__") or []
    ids = {parent["id"] for parent in parents}
    return next((other for other, run in runs.items() if run["id"] in ids), None)


def flow_run(flow_run_id: str) -> Any:
    with prefect_client() as client:
        return client.read_flow_run(UUID(flow_run_id))


def test_a_run_shows_its_name_steps_and_links_in_prefect(pg_env: None, worker: Any) -> None:
    save("typed.steps", handler=TYPED, public_cfg=PARAMS, secret_cfg={"api_key": "key-1"})
    assert sync_job("typed.steps").error is None
    description = deployment("typed.steps").description
    admin = get_settings().admin_url
    assert f"({admin}/admin/job/details/typed.steps)" in description

    log = wait_for_final(run_now("typed.steps", {**PARAMS, "mode": "full"}).id, 180)
    assert log.status == RunStatus.SUCCESS.value, log.error
    assert log.snapshot_params == {**PARAMS, "mode": "full"}
    run = flow_run(log.flow_run_id)
    assert re.fullmatch(r"typed\.steps · \d{4}-\d\d-\d\d \d\d:\d\d · manual", run.name)

    runs = task_runs(log.flow_run_id, expected=7)
    assert set(runs) == {
        "load job", "run plugin", "fetch", "transform", "page 1", "push", "record",
    }
    assert all(item["state_type"] == "COMPLETED" for item in runs.values())
    assert parent_of(runs, "fetch") == "run plugin"
    assert parent_of(runs, "page 1") == "transform"
    assert parent_of(runs, "run plugin") is None
    step_logs = logs_of_task_run(runs["fetch"]["id"], "fetching from crm in batches of 10")
    assert any("fetching from crm in batches of 10" in line["message"] for line in step_logs)

    of_run = {"artifacts": {"flow_run_id": {"any_": [log.flow_run_id]}}}
    artifacts = prefect_api("/artifacts/filter", of_run)
    link = f"[JobLog #{log.id}]({admin}/admin/job-log/details/{log.id})"
    assert any(item["data"] == link for item in artifacts), artifacts  # Prefect's link artifact
    results = [item for item in artifacts if item.get("description") == "Result"]
    assert len(results) == 1 and '"rows": 3' in results[0]["data"]

    # A failing step is Failed with its error; the steps after it never ran.
    failed = wait_for_final(run_now("typed.steps", {**PARAMS, "fail_in_transform": True}).id, 180)
    assert failed.status == RunStatus.FAILED.value
    runs = task_runs(failed.flow_run_id, expected=5)
    assert runs["fetch"]["state_type"] == "COMPLETED"
    assert runs["transform"]["state_type"] == "FAILED"
    assert runs["run plugin"]["state_type"] == "FAILED"
    assert "push" not in runs and "record" not in runs
    with prefect_client() as client:
        state = client.read_task_run(UUID(runs["transform"]["id"])).state
    assert state.message == "ValueError: cannot transform rows for crm"

    again = wait_for_final(retry(failed.id, use="current").id, 180)
    assert again.status == RunStatus.SUCCESS.value
    assert flow_run(again.flow_run_id).name.endswith(f" · retry of #{failed.id}")
