"""Benchmark 4: how accurately scheduled runs start, and what happens when many fire together.

Part A: `--schedule-jobs` no-op jobs on `* * * * *` for `--schedule-minutes` slots, on the shared
engine (product defaults: one `connecthub worker` and its fork server, poll 1 s, prefetch 30 s,
no --limit). For every (job, slot): start lateness = JobLog `started_at` (the flow body
starting) minus the slot (the flow run's expected start time), missed slots (no successful
JobLog for the slot) and duplicate slots (more than one flow run, or more than one JobLog row,
for one job and slot). The jobs are then disabled.

Part B: bursts of `--burst-jobs` runs whose cron fires once, all in the same minute, one burst
after another: ConnectHub jobs with the product's defaults, then each of `--burst-variants`
(bench/settings.py): `cold` (ConnectHub jobs with CONNECTHUB_WARM_START=false, the old path:
every run process a fresh `python -m prefect.engine`), `bare` (as many deployments of the
do-nothing flow on Prefect's own worker and pool). Part C: the same with `--top-jobs` runs at the
top of one minute, the product's and each of `--top-variants`: all must start within 60 s, none
missed, none doubled. The same figures for every burst, and a split of the lateness into phases
(worker pick-up, process spawn, the launcher's fork or exec or Prefect's supervisor, engine start,
ConnectHub's start of the body), show where the delay comes from and what warm start saves.
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
from bench.settings import Variant, product_worker
from bench.stack import runs_in_flight, wait_idle
from bench.stats import Section, Summary, fmt_number, table
from connecthub.db.engine import session_scope
from connecthub.db.models import Job
from deployments.client import prefect_client
from deployments.sync import POOL_COMMAND

TITLE = "4. Schedule accuracy"
TARGET_P95_SECONDS = 5.0  # issue 6: jobs every minute
TARGET_BURST_P95_SECONDS = 3.0  # issue 11: 20 jobs in the same minute
TARGET_TOP_SECONDS = 60.0  # issue 11: 100 jobs at the top of a minute, all started within
LEAD_SECONDS = 20  # the first slot is at least this far away, so its runs are scheduled
SAVE_SECONDS_PER_JOB = 0.5  # saving and syncing a job, so a burst's slot is still ahead after
WORKER_START_SECONDS = 20  # more lead when a burst starts its own worker
FINISH_TIMEOUT = 180
FINISH_SECONDS_PER_RUN = 3  # more time for a large burst on the old path
# What a run process started as a new interpreter holds while it waits for its slot (cold and
# bare; ~110-150 MB here): a burst of them must fit in the memory available, on a shared machine.
FRESH_PROCESS_MIB = 160


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
    """Samples how many runs the worker has in flight at once (one process each that Prefect's
    worker started: a launcher, an engine or a workspace supervisor)."""

    def __init__(self, worker_pid: int) -> None:
        self.worker_pid = worker_pid
        self.peak = 0

    def __call__(self) -> None:
        self.peak = max(self.peak, len(runs_in_flight(self.worker_pid)))


def _wait_window_done(client: SyncPrefectClient, deployment_ids: list[str], first: datetime,
                      last: datetime, sampler: Concurrency,
                      timeout: float = FINISH_TIMEOUT) -> list[FlowRun]:
    _sleep_until(last + timedelta(seconds=2), sampler)
    deadline = time.monotonic() + timeout
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
            "forked": sum(bool(t.forked) for t in timings),
            "duplicates": duplicates, "not_successful": not_successful,
            "expected": len(by_deployment) * len(slots)}


def _phases(results: dict[str, dict[str, Any]]) -> str:
    phases = [
        ("slot → Pending (worker picks the run up; < 0 when prefetched)", "expected_start",
         "pending"),
        ("Pending → worker has spawned the run's process", "pending", "process_start"),
        ("the run's process → engine start (the launcher's fork or exec; bare: Prefect's "
         "workspace supervisor)", "process_start", "engine_start"),
        ("engine start → Running (cold, bare: imports; flow load, wait for the slot)",
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
        cpu_rows.append(f"{name}: {fmt_number(cpu.median, 2)} s")
    return (
        "Lateness split into phases (p50 / p95 seconds, from Prefect's state history, the run "
        "processes' start, fork or exec times and JobLog):\n\n"
        + table(["phase", *results.keys()], rows)
        + "\n\nCPU time of one run's processes (median): " + "; ".join(cpu_rows) + "."
    )


def _report(section: Section, label: str, result: dict[str, Any], kind: str,
            judged: bool) -> None:
    """The figures of one window of `kind` ("every-minute", "burst" or "top"), against its
    targets when `judged` (the product's), else for information (a variant's)."""
    lateness = result["lateness"]
    if kind == "top":
        everyone = lateness.n == result["expected"]
        section.add(f"{label}: the last run's start after the slot (flow body start - slot)",
                    f"{fmt_number(lateness.max, 1)} s ({lateness.fmt_p('s', 1)})",
                    f"all ≤ {TARGET_TOP_SECONDS:g} s" if judged else "",
                    ok=(everyone and lateness.max <= TARGET_TOP_SECONDS) if judged else None)
    else:
        goal = TARGET_P95_SECONDS if kind == "every-minute" else TARGET_BURST_P95_SECONDS
        section.add(f"{label}: start lateness (flow body start - slot)", lateness.fmt_p("s", 2),
                    f"p95 ≤ {goal:g} s" if judged else "",
                    ok=(lateness.n > 0 and lateness.p95 <= goal) if judged else None)
    section.add(f"{label}: missed slots (of {result['expected']})", str(result["missed"]),
                "0" if judged else "", ok=(result["missed"] == 0) if judged else None)
    section.add(f"{label}: duplicate slots", str(result["duplicates"]),
                "0" if judged else "", ok=(result["duplicates"] == 0) if judged else None)


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
        wait_idle(engine.worker.pid, timeout=30)  # every process has written its record
        every_minute = _analyse(ctx, client, "connecthub", deployments, slots, runs)
    peak_a = sampler.peak
    label_a = f"{len(job_ids)} jobs every minute x {len(slots)} min"
    _report(section, label_a, every_minute, "every-minute", judged=True)

    # Part B: bursts of `burst_jobs` runs firing in the same minute, one burst after another:
    # ConnectHub with product defaults, then each of `burst_variants` (e.g. cold, bare). Part C:
    # `top_jobs` runs at the top of one minute, the product's and each of `top_variants`.
    bursts: dict[str, dict[str, Any]] = {}
    notes = []
    plan = [(config.burst_jobs, text, "burst")
            for text in ["connecthub", *config.burst_variants]]
    plan += [(config.top_jobs, text, "top") for text in ["connecthub", *config.top_variants]]
    for index, (jobs, text, kind) in enumerate(plan):
        variant = Variant.parse(text, None)
        label = _burst_label(variant, jobs, kind)
        skip = _too_big(variant, jobs)
        if skip:
            notes.append(f"{label}: not run, {skip}")
            section.add(f"{label}: not run", skip)
            continue
        result, note = _burst(ctx, index, variant, jobs)
        bursts[label] = result
        notes.append(f"{label}: slot {note}")
        _report(section, label, result, kind, judged=text == "connecthub")
    section.note(
        f"Part A slots {slots[0]:%H:%M}-{slots[-1]:%H:%M} UTC, at most {peak_a} runs in flight "
        f"at once. Bursts: {'; '.join(notes)}. Worker and pool: the product's unless the label "
        f"says otherwise, i.e. `connecthub worker` with {product_worker()}, no --limit, and "
        f"the pool's runs started as `{POOL_COMMAND}` (forked from the fork server); variants "
        "are described in bench/settings.py (`bare`: Prefect's own worker with the same "
        "polling settings). The lateness of a bare run is measured to its Running state (it "
        "has no body to record)."
    )
    section.note(_phases({label_a: every_minute, **bursts}))
    return section


def _too_big(variant: Variant, jobs: int) -> str | None:
    """Why a burst of fresh interpreters would not fit in the memory available, if it would not
    (forked run processes share the fork server's pages)."""
    if not (variant.cold or variant.bare or variant.supervisor):
        return None
    with open("/proc/meminfo") as meminfo:
        available = next(int(line.split()[1]) for line in meminfo
                         if line.startswith("MemAvailable:")) // 1024
    needed = jobs * FRESH_PROCESS_MIB
    if available >= needed:
        return None
    return (f"{jobs} fresh interpreters at once need ~{needed:,} MiB, "
            f"{available:,} MiB available")


def _burst_label(variant: Variant, jobs: int, kind: str) -> str:
    when = "at the top of a minute" if kind == "top" else "in the same minute"
    what = "bare Prefect deployments" if variant.bare else "ConnectHub jobs"
    rest = "+".join(t for t in variant.label.split("+") if t not in ("bare", "connecthub"))
    return f"{jobs} {what} {when}" + (f", `{rest}`" if rest else "")


def _burst(ctx: Context, index: int, variant: Variant, jobs: int) -> tuple[dict[str, Any], str]:
    """`jobs` runs of one kind whose schedules fire in the same minute; (result, note).

    A variant's worker is stopped while the jobs are saved and started once they are: saving a
    job runs ConnectHub's sync, which gives the pool the product's command again (undoing
    `supervisor`), and a running worker may keep its copy of the pool for a while.
    """
    lead = (LEAD_SECONDS + 10 + jobs * SAVE_SECONDS_PER_JOB
            + (WORKER_START_SECONDS if variant.changes_worker else 0))
    slot = _next_slot(lead)
    cron = f"{slot.minute} {slot.hour} * * *"
    if variant.changes_worker:
        ctx.stop_worker()
    with prefect_client() as client:
        if variant.bare:
            deployments = {
                f"burst{index}-{i:03d}": str(deploy_bare(client, f"burst{index}-{i:03d}", cron))
                for i in range(jobs)
            }
        else:
            job_ids = [f"bench.burst{index}-{i:03d}" for i in range(jobs)]
            save_noop_jobs(job_ids, cron=cron)
            deployments = _deployment_ids(job_ids)
    if variant.changes_worker:
        ctx.use_worker(variant, f"burst-{index}")
    worker = ctx.engine().worker
    sampler = Concurrency(worker.pid)
    with prefect_client() as client:
        scheduled = _wait_scheduled(client, list(deployments.values()), slot, slot)
        runs = _wait_window_done(client, list(deployments.values()), slot, slot, sampler,
                                 FINISH_TIMEOUT + jobs * FINISH_SECONDS_PER_RUN)
        wait_final(client, [str(r.id) for r in runs], 60)
        wait_idle(worker.pid, timeout=30)
        kind = "bare" if variant.bare else "connecthub"
        result = _analyse(ctx, client, kind, deployments, [slot], runs)
    if variant.changes_worker:
        ctx.restore_worker(f"burst-{index}-after")
    note = (f"{slot:%H:%M} UTC, at most {sampler.peak} runs in flight at once, "
            f"{result['forked']} of {len(result['timings'])} run processes forked from the fork "
            f"server, {result['supervisor']} started through Prefect's workspace supervisor"
            + ("" if scheduled else " (not all runs were scheduled before the slot)"))
    return result, note
