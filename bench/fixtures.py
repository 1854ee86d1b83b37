"""What the engine benchmarks run: no-op ConnectHub jobs, bare Prefect deployments, run timings.

- `save_noop_jobs(ids, ...)` saves jobs of `bench.plugins:NoopJob` (or another handler)
  through `crud.save_job` (so their secrets are encrypted like any job's) and syncs them with
  `sync_job`, into the work pool the settings name.
- `deploy_bare(client, name, ...)` creates a deployment of `bench/bare_flow.py:do_nothing` with
  the raw Prefect client, in the bare flow's own pool (`bench.settings.BARE_POOL`, Prefect's
  default job template), which Prefect's own worker serves: Prefect alone.
- `RunTiming` collects, for one flow run, the timestamps that split its time: trigger (this
  process), created / Pending / Running / final state (Prefect's state history), process start,
  engine start and exit, CPU and API calls (the run's processes, via bench/_hook), body start
  and end (JobLog).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import (
    ConcurrencyLimitStrategy,
    ConcurrencyOptions,
    FlowRun,
)
from prefect.client.schemas.schedules import CronSchedule
from prefect.client.schemas.sorting import FlowRunSort
from prefect.utilities.callables import parameter_schema
from sqlalchemy import select

from bench.apicalls import is_write
from bench.bare_flow import ENTRYPOINT as BARE_ENTRYPOINT
from bench.bare_flow import FLOW_NAME as BARE_FLOW_NAME
from bench.bare_flow import do_nothing
from bench.plugins import HANDLER_PATH
from bench.settings import BARE_POOL
from bench.stack import REPO_ROOT
from connecthub.db import crud, joblog
from connecthub.db.engine import session_scope
from connecthub.db.models import JobLog
from connecthub.jobs.spec import JobSpec
from deployments.sync import sync_job

RARE_CRON = "0 0 1 1 *"  # once a year: deployed with a schedule that never fires during a run
SECRET = {"token": "bench-secret-token-0123456789"}


def noop_spec(job_id: str, cron: str = RARE_CRON, handler_path: str = HANDLER_PATH,
              **fields: Any) -> JobSpec:
    fields.setdefault("public_cfg", {"name": job_id})
    return JobSpec(id=job_id, handler_path=handler_path, cron_expr=cron, secret_cfg=SECRET,
                   **fields)


def save_noop_jobs(job_ids: Iterable[str], cron: str = RARE_CRON, sync: bool = True,
                   **fields: Any) -> None:
    """Save (and by default sync) no-op jobs (`fields` may name another `handler_path`);
    raises if a sync fails."""
    job_ids = list(job_ids)
    with session_scope() as session:
        for job_id in job_ids:
            crud.save_job(session, noop_spec(job_id, cron, **fields))
    if sync:
        for job_id in job_ids:
            outcome = sync_job(job_id)
            if outcome.error:
                raise RuntimeError(f"sync of {job_id} failed: {outcome.error}")


def deploy_bare(client: SyncPrefectClient, name: str, cron: str | None = None,
                concurrency_limit: int | None = None) -> UUID:
    """A deployment of the do-nothing flow in the bare pool (raw client); with
    `concurrency_limit`, limited like ConnectHub's jobs are by default (1, ENQUEUE)."""
    flow_id = client.create_flow_from_name(BARE_FLOW_NAME)
    schedules = (
        [DeploymentScheduleCreate(schedule=CronSchedule(cron=cron, timezone="UTC"), active=True)]
        if cron else []
    )
    return client.create_deployment(
        flow_id=flow_id,
        name=name,
        work_pool_name=BARE_POOL,
        entrypoint=BARE_ENTRYPOINT,
        pull_steps=[
            {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO_ROOT)}}
        ],
        parameters={"job_id": name},
        parameter_openapi_schema=parameter_schema(do_nothing.fn).model_dump_for_openapi(),
        enforce_parameter_schema=True,
        schedules=schedules,
        concurrency_limit=concurrency_limit,
        concurrency_options=ConcurrencyOptions(
            collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
        ) if concurrency_limit else None,
    )


def epoch(value: Any) -> float | None:
    return value.timestamp() if value is not None else None


@dataclass
class RunTiming:
    """Timestamps (epoch seconds) of one flow run; None where unknown."""

    flow_run_id: str
    # "connecthub" (warm), "cold", "candidate" (ConnectHub from another checkout) or "bare..."
    kind: str
    trigger_start: float | None = None
    trigger_end: float | None = None
    expected_start: float | None = None
    created: float | None = None
    pending: float | None = None
    running: float | None = None
    final: float | None = None
    final_type: str | None = None
    process_start: float | None = None  # the process Prefect's worker spawns
    # Where the engine starts: the fork of the run process from the fork server (warm), the
    # launcher's or the workspace supervisor's exec of `python -m prefect.engine`, or
    # process_start when the worker starts the engine itself
    engine_start: float | None = None
    supervisor: bool | None = None  # whether the workspace supervisor started the run
    forked: bool | None = None  # whether the run's process was forked from the fork server
    engine_done: float | None = None  # the engine's main thread done: exit begins
    process_exit: float | None = None
    process_peak_kb: int | None = None
    flow_cpu: float | None = None
    body_start: float | None = None
    body_end: float | None = None
    joblog_status: str | None = None
    api_calls: list[list[Any]] = field(default_factory=list)
    trigger_api_calls: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU-seconds the run cost, by part

    @property
    def end(self) -> float | None:
        """When the run's outcome is recorded: JobLog SUCCESS (ConnectHub) or Completed (bare)."""
        return self.body_end if self.is_connecthub else self.final

    @property
    def is_connecthub(self) -> bool:
        return self.kind in ("connecthub", "cold", "candidate")

    @property
    def total(self) -> float | None:
        return diff(self.trigger_start, self.end)

    @property
    def flow_api_writes(self) -> int:
        return sum(is_write(call[0], call[1]) for call in self.api_calls)

    @property
    def flow_api_seconds(self) -> float:
        return sum(call[4] for call in self.api_calls)


def diff(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else end - start


def is_final(flow_run: FlowRun) -> bool:
    return flow_run.state is not None and flow_run.state.is_final()


def wait_final(client: SyncPrefectClient, flow_run_ids: list[str], timeout: float,
               poll: float = 0.25) -> dict[str, FlowRun]:
    """Poll until every flow run is final (or the timeout); returns the last read of each."""
    deadline = time.monotonic() + timeout
    ids = [UUID(i) for i in flow_run_ids]
    latest: dict[str, FlowRun] = {}
    while True:
        for offset in range(0, len(ids), 200):
            chunk = ids[offset : offset + 200]
            for run in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=len(chunk)
            ):
                latest[str(run.id)] = run
        if all(str(i) in latest and is_final(latest[str(i)]) for i in ids):
            return latest
        if time.monotonic() > deadline:
            return latest
        time.sleep(poll)


def read_all_flow_runs(client: SyncPrefectClient, **filters: Any) -> list[FlowRun]:
    """Every flow run matching `filters` (the API answers at most 200 per call)."""
    found: list[FlowRun] = []
    while True:
        page = client.read_flow_runs(
            **filters, sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=200, offset=len(found)
        )
        found += page
        if len(page) < 200:
            return found


def fill_from_prefect(client: SyncPrefectClient, timing: RunTiming,
                      flow_run: FlowRun | None = None) -> None:
    flow_run = flow_run or client.read_flow_run(UUID(timing.flow_run_id))
    timing.created = epoch(flow_run.created)
    timing.expected_start = epoch(flow_run.expected_start_time)
    for state in client.read_flow_run_states(UUID(timing.flow_run_id)):
        stamp = epoch(state.timestamp)
        kind = state.type.value
        if kind == "PENDING" and timing.pending is None:
            timing.pending = stamp
        elif kind == "RUNNING":
            timing.running = stamp if timing.running is None else timing.running
        elif state.is_final():
            timing.final, timing.final_type = stamp, kind


def fill_from_joblog(timing: RunTiming) -> None:
    log = joblog.latest_attempt(timing.flow_run_id)
    if log is not None:
        timing.body_start = epoch(log.started_at)
        timing.body_end = epoch(log.finished_at) if log.status == "SUCCESS" else None
        timing.joblog_status = log.status


def process_records(log_dir: Path, flow_run_id: str) -> list[dict[str, Any]]:
    records = []
    for path in sorted(log_dir.glob(f"{flow_run_id}-*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return records


def last_per_pid(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last record of each process: an exec keeps the pid and its CPU count, so a pid's
    records are cumulative and the last one holds its total."""
    last: dict[int, dict[str, Any]] = {}
    for record in records:
        if record["pid"] not in last or record["started"] > last[record["pid"]]["started"]:
            last[record["pid"]] = record
    return list(last.values())


def process_cpu(records: list[dict[str, Any]]) -> float:
    """CPU seconds of the processes of `records`."""
    return sum(record.get("cpu_seconds") or 0.0 for record in last_per_pid(records))


def through_supervisor(records: list[dict[str, Any]]) -> bool:
    """Whether these records of one run show Prefect's workspace supervisor starting it."""
    return any("_workspace_supervisor" in " ".join(r.get("argv") or []) for r in records)


def was_forked(records: list[dict[str, Any]]) -> bool:
    """Whether these records of one run show its process forked from the fork server."""
    return any(record.get("role") == "forked" for record in records)


def _is_engine(record: dict[str, Any]) -> bool:
    return record.get("role") == "forked" or "prefect/engine.py" in " ".join(
        record.get("argv") or [])


def fill_from_process(log_dir: Path, timing: RunTiming, wait: float = 10) -> None:
    deadline = time.monotonic() + wait
    records = process_records(log_dir, timing.flow_run_id)
    while not records and time.monotonic() < deadline:
        time.sleep(0.1)
        records = process_records(log_dir, timing.flow_run_id)
    if records:
        records.sort(key=lambda record: record["started"])
        timing.process_start = records[0]["started"]
        engines = [record for record in records if _is_engine(record)]
        timing.engine_start = (engines[0] if engines else records[-1])["started"]
        timing.engine_done = next((r["main_done"] for r in engines if r.get("main_done")), None)
        timing.process_exit = max(record["exited"] for record in records)
        timing.process_peak_kb = max((record["vmhwm_kb"] or 0) for record in records) or None
        timing.api_calls = [call for record in records for call in record["requests"]]
        timing.flow_cpu = process_cpu(records) or None
        timing.supervisor = through_supervisor(records)
        timing.forked = was_forked(records)


def joblogs_by_flow_run(flow_run_ids: Iterable[str]) -> dict[str, list[JobLog]]:
    """JobLog rows of these flow runs, detached."""
    ids = list(flow_run_ids)
    found: dict[str, list[JobLog]] = {i: [] for i in ids}
    with session_scope() as session:
        for offset in range(0, len(ids), 500):
            chunk = ids[offset : offset + 500]
            for row in session.scalars(select(JobLog).where(JobLog.flow_run_id.in_(chunk))):
                found.setdefault(row.flow_run_id, []).append(row)
        session.expunge_all()
    return found
