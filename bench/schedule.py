"""Benchmark 4: how accurately scheduled runs start, and what happens when many fire together.

Part A: `--schedule-jobs` no-op jobs on `* * * * *` for `--schedule-minutes` slots, on the shared
engine (product defaults: one `connecthub worker`, poll 1 s, prefetch 30 s, no --limit, and the
pool's runs starting the engine directly). For every (job, slot):
start lateness = JobLog `started_at` (the flow body starting) minus the slot (the flow run's
expected start time), missed slots (no successful JobLog for the slot) and duplicate slots (more
than one flow run, or more than one JobLog row, for one job and slot). The jobs are then disabled.

Part B: bursts of `--burst-jobs` runs whose cron fires once, all in the same minute, one burst
after another: ConnectHub jobs with the product's defaults, then each of `--burst-variants`:
`bare` (as many bare Prefect deployments of the do-nothing flow, the engine alone) and, e.g.,
`supervisor+prefetch=1` (ConnectHub jobs the way ConnectHub ran them before its worker
prefetched and its pool started the engine directly: runs go through Prefect's workspace
supervisor and the worker picks them up 1 s ahead at most; see bench/settings.py). The same
figures, and a split of the lateness into phases (worker pick-up, process spawn, Prefect's
supervisor where there is one, engine start, ConnectHub's start of the body), show where the
delay comes from and what the product's defaults save.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
)
from prefect.client.schemas.objects import FlowRun

from bench.context import Context
from bench.fixtures import (
    RunTiming,
    deploy_bare,
    diff,
    fill_from_joblog,
    fill_from_prefect,
    fill_from_process,
    joblogs_by_flow_run,
    read_all_flow_runs,
    save_noop_jobs,
    wait_final,
)
from bench.settings import Variant, product_worker, set_pool_command
from bench.stack import descendants, wait_no_children
from bench.stats import Section, Summary, fmt_number, table
from connecthub.db.engine import session_scope
from connecthub.db.models import Job
from deployments.client import prefect_client
from deployments.sync import ENGINE_COMMAND

TITLE = "4. Schedule accuracy"
TARGET_P95_SECONDS = 5.0
LEAD_SECONDS = 20  # the first slot is at least this far away, so its runs are scheduled
WORKER_START_SECONDS = 20  # more lead when a burst starts its own worker
FINISH_TIMEOUT = 180


def _next_slot(lead: float) -> datetime:
    soon = datetime.now(UTC) + timedelta(seconds=lead)
    return soon.replace(second=0, microsecond=0) + timedelta(minutes=1)


def _sleep_until(moment: datetime, sampler: Any = None) -> None:
    while (left := (moment - datetime.now(UTC)).total_seconds()) > 0:
        if sampler is not None:
            sampler()
        time.sleep(min(left, 0.5))


def _deployment_ids(job_ids: list[str]) -> dict[str, str]:
    with session_scope() as session:
        return {
            job_id: session.get(Job, job_id).deployment_id  # type: ignore[union-attr]
            for job_id in job_ids
        }


def _runs_between(client: SyncPrefectClient, deployment_ids: list[str], first: datetime,
                  last: datetime) -> list[FlowRun]:
    return read_all_flow_runs(
        client,
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(
            any_=[UUID(d) for d in deployment_ids])),
        flow_run_filter=FlowRunFilter(expected_start_time=FlowRunFilterExpectedStartTime(
            after_=first - timedelta(seconds=1), before_=last + timedelta(seconds=1))),
    )


def _wait_scheduled(client: SyncPrefectClient, deployment_ids: list[str], slot: datetime,
                    deadline: datetime) -> bool:
    """Wait until every deployment has a run scheduled at `slot`."""
    while datetime.now(UTC) < deadline:
        runs = _runs_between(client, deployment_ids, slot, slot)
        if {str(run.deployment_id) for run in runs} >= set(deployment_ids):
            return True
        time.sleep(1)
    return False


class Concurrency:
    """Samples how many flow processes the worker runs at once."""

    def __init__(self, worker_pid: int) -> None:
        self.worker_pid = worker_pid
        self.peak = 0

    def __call__(self) -> None:
        self.peak = max(self.peak, len(descendants(self.worker_pid)))


def _wait_window_done(client: SyncPrefectClient, deployment_ids: list[str], first: datetime,
                      last: datetime, sampler: Concurrency) -> list[FlowRun]:
    _sleep_until(last + timedelta(seconds=2), sampler)
    deadline = time.monotonic() + FINISH_TIMEOUT
    while True:
        sampler()
        runs = _runs_between(client, deployment_ids, first, last)
        if all(run.state is not None and run.state.is_final() for run in runs):
            return runs
        if time.monotonic() > deadline:
            return runs
        time.sleep(0.5)


def _analyse(ctx: Context, client: SyncPrefectClient, kind: str, by_deployment: dict[str, str],
             slots: list[datetime], runs: list[FlowRun]) -> dict[str, Any]:
    """Lateness, missed and duplicate slots of `runs` against (deployment, slot) expectations."""
    logs = joblogs_by_flow_run(str(run.id) for run in runs) if kind == "connecthub" else {}
    per_slot: dict[tuple[str, datetime], list[FlowRun]] = defaultdict(list)
    for run in runs:
        slot = run.expected_start_time.astimezone(UTC).replace(second=0, microsecond=0)
        per_slot[(str(run.deployment_id), slot)].append(run)
    timings: list[RunTiming] = []
    missed, duplicates, not_successful = 0, 0, 0
    for deployment_id in by_deployment.values():
        for slot in slots:
            found = per_slot.get((deployment_id, slot), [])
            duplicates += max(0, len(found) - 1)
            ok = False
            for run in found:
                timing = RunTiming(str(run.id), kind)
                fill_from_prefect(client, timing, run)
                fill_from_process(ctx.stack.process_log_dir, timing, wait=2)
                if kind == "connecthub":
                    fill_from_joblog(timing)
                    rows = logs.get(str(run.id), [])
                    duplicates += max(0, len(rows) - 1)
                    ok = ok or any(row.status == "SUCCESS" for row in rows)
                else:
                    timing.body_start = timing.running
                    ok = ok or timing.final_type == "COMPLETED"
                timings.append(timing)
            if not ok:
                missed += 1
                not_successful += bool(found)
    lateness = Summary.of(diff(t.expected_start, t.body_start) for t in timings)
    return {"timings": timings, "lateness": lateness, "missed": missed,
            "supervisor": sum(bool(t.supervisor) for t in timings),
            "duplicates": duplicates, "not_successful": not_successful,
            "expected": len(by_deployment) * len(slots)}


def _phases(results: dict[str, dict[str, Any]]) -> str:
    phases = [
        ("slot → Pending (worker picks the run up; < 0 when prefetched)", "expected_start",
         "pending"),
        ("Pending → worker has spawned the run's process", "pending", "process_start"),
        ("workspace supervisor, `supervisor` only (Prefect imports, reads, pull step, exec)",
         "process_start", "engine_start"),
        ("`prefect.engine` start → Running (imports, flow load, wait for the slot)",
         "engine_start", "running"),
        ("Running → body start (ConnectHub: JobLog RUNNING)", "running", "body_start"),
        ("**slot → body start (lateness)**", "expected_start", "body_start"),
    ]
    rows = []
    for label, start, end in phases:
        row = [label]
        for result in results.values():
            summary = Summary.of(diff(getattr(t, start), getattr(t, end))
                                 for t in result["timings"])
            row.append(f"{fmt_number(summary.p50, 2)} / {fmt_number(summary.p95, 2)}"
                       if summary.n else "—")
        rows.append(row)
    cpu_rows = []
    for name, result in results.items():
        cpu = Summary.of(t.flow_cpu for t in result["timings"] if t.flow_cpu is not None)
        cpu_rows.append(f"{name}: {fmt_number(cpu.median, 2)} s CPU per flow process")
    return (
        "Lateness split into phases (p50 / p95 seconds, from Prefect's state history, the flow "
        "process's start time and JobLog):\n\n"
        + table(["phase", *results.keys()], rows)
        + "\n\nCPU time of one flow process (median): " + "; ".join(cpu_rows) + "."
    )


def _report(section: Section, label: str, result: dict[str, Any], targets: bool) -> None:
    lateness = result["lateness"]
    section.add(f"{label}: start lateness (flow body start - slot)", lateness.fmt_p("s", 2),
                f"p95 ≤ {TARGET_P95_SECONDS:g} s" if targets else "",
                ok=(lateness.n > 0 and lateness.p95 <= TARGET_P95_SECONDS) if targets else None)
    section.add(f"{label}: missed slots (of {result['expected']})", str(result["missed"]),
                "0" if targets else "", ok=(result["missed"] == 0) if targets else None)
    section.add(f"{label}: duplicate slots", str(result["duplicates"]),
                "0" if targets else "", ok=(result["duplicates"] == 0) if targets else None)


def run(ctx: Context) -> Section:
    section = Section("schedule", TITLE)
    config = ctx.config
    engine = ctx.engine()
    sampler = Concurrency(engine.worker.pid)

    # Part A: every minute.
    job_ids = [f"bench.every-minute-{i:02d}" for i in range(config.schedule_jobs)]
    save_noop_jobs(job_ids, cron="* * * * *")
    deployments = _deployment_ids(job_ids)
    with prefect_client() as client:
        first = _next_slot(LEAD_SECONDS)
        if not _wait_scheduled(client, list(deployments.values()), first, first):
            first += timedelta(minutes=1)
        slots = [first + timedelta(minutes=i) for i in range(config.schedule_minutes)]
        runs = _wait_window_done(client, list(deployments.values()), slots[0], slots[-1],
                                 sampler)
        save_noop_jobs(job_ids, cron="* * * * *", enabled=False)  # pauses the deployments
        wait_no_children(engine.worker.pid, timeout=30)  # every process has written its record
        every_minute = _analyse(ctx, client, "connecthub", deployments, slots, runs)
    peak_a = sampler.peak
    label_a = f"{len(job_ids)} jobs every minute x {len(slots)} min"
    _report(section, label_a, every_minute, targets=True)

    # Part B: bursts of `burst_jobs` runs firing in the same minute, one burst after another:
    # ConnectHub with product defaults, then each of `burst_variants` (e.g. the bare flow).
    bursts: dict[str, dict[str, Any]] = {}
    notes = []
    for index, text in enumerate(["connecthub", *config.burst_variants]):
        variant = Variant.parse(text, None)
        label = _burst_label(variant, config.burst_jobs)
        result, note = _burst(ctx, index, variant, config.burst_jobs)
        bursts[label] = result
        notes.append(f"{label}: slot {note}")
        _report(section, label, result, targets=index == 0)
    section.note(
        f"Part A slots {slots[0]:%H:%M}-{slots[-1]:%H:%M} UTC, at most {peak_a} flow processes "
        f"at once. Bursts: {'; '.join(notes)}. Worker and pool: the product's unless the label "
        f"says otherwise, i.e. `connecthub worker` with {product_worker()}, no --limit, and "
        f"the pool's runs started as `{ENGINE_COMMAND}`; variants are described in "
        "bench/settings.py. The lateness of a bare run is measured to its Running state (it "
        "has no body to record)."
    )
    section.note(_phases({label_a: every_minute, **bursts}))
    return section


def _burst_label(variant: Variant, jobs: int) -> str:
    if variant.label == "connecthub":
        return f"{jobs} ConnectHub jobs in the same minute"
    what = "bare Prefect deployments" if variant.bare else "ConnectHub jobs"
    rest = "+".join(t for t in variant.label.split("+") if t != "bare")
    return f"{jobs} {what} in the same minute" + (f", `{rest}`" if rest else "")


def _burst(ctx: Context, index: int, variant: Variant, jobs: int) -> tuple[dict[str, Any], str]:
    """`jobs` runs of one kind whose schedules fire in the same minute; (result, note).

    A variant's worker is stopped while the jobs are saved and started once the pool is set:
    saving a job runs ConnectHub's sync, which gives a pool without a command the product's one
    (undoing `supervisor`), and a running worker may keep its copy of the pool for a while.
    """
    slot = _next_slot(LEAD_SECONDS + 10 + (WORKER_START_SECONDS if variant.changes_worker else 0))
    cron = f"{slot.minute} {slot.hour} * * *"
    if variant.changes_worker:
        ctx.stop_worker()
    with prefect_client() as client:
        if variant.bare:
            deployments = {
                f"burst{index}-{i:02d}": str(deploy_bare(client, f"burst{index}-{i:02d}", cron))
                for i in range(jobs)
            }
        else:
            job_ids = [f"bench.burst{index}-{i:02d}" for i in range(jobs)]
            save_noop_jobs(job_ids, cron=cron)
            deployments = _deployment_ids(job_ids)
        if variant.changes_worker:
            set_pool_command(client, supervisor=variant.supervisor)
    if variant.changes_worker:
        ctx.restart_worker(f"burst-{index}", **variant.env)
    worker = ctx.engine().worker
    sampler = Concurrency(worker.pid)
    with prefect_client() as client:
        scheduled = _wait_scheduled(client, list(deployments.values()), slot, slot)
        runs = _wait_window_done(client, list(deployments.values()), slot, slot, sampler)
        wait_final(client, [str(r.id) for r in runs], 60)
        wait_no_children(worker.pid, timeout=30)
        kind = "bare" if variant.bare else "connecthub"
        result = _analyse(ctx, client, kind, deployments, [slot], runs)
        if variant.changes_worker:
            set_pool_command(client, supervisor=False)
    if variant.changes_worker:
        ctx.restart_worker(f"burst-{index}-after")
    note = (f"{slot:%H:%M} UTC, at most {sampler.peak} flow processes at once, "
            f"{result['supervisor']} of {len(result['timings'])} runs started through Prefect's "
            "workspace supervisor"
            + ("" if scheduled else " (not all runs were scheduled before the slot)"))
    return result, note
