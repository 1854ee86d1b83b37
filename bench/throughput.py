"""Benchmark 5: runs per minute one worker sustains, memory, and where the ceiling is.

A feeder keeps the worker busy: it starts manual runs of no-op jobs (`run_now`, round-robin over
JOBS jobs, so that no job's own concurrency limit of 1 holds a run back) whenever fewer than
`2 x --worker-limit` runs are unfinished, for a warm-up and then `--throughput-minutes`. Runs
per minute = JobLog rows that turned SUCCESS inside the timed window / its minutes. Then the
feeder stops, every started run is waited for, and each must have exactly one JobLog row, in
SUCCESS (and Completed in Prefect). An admin process serves a JobLog list request every 2 s
meanwhile, so its memory and latency are measured under load.

Memory: peak RSS (VmHWM) of the worker, the Prefect server and the admin, and of every flow-run
process (recorded by bench/_hook as it exits). CPU: machine-wide busy time over the window
(/proc/stat) and the share of the flow processes, the worker, the Prefect server and PostgreSQL
(all of its processes, so other databases' load counts too), giving CPU-seconds per run and the
ceiling they imply on this machine.

Variants (`--variants`, each `--variant-minutes`) change one setting (bench/settings.py) and
report runs per minute: e.g. `supervisor` (the pool's runs go through Prefect's workspace
supervisor, one Python start-up more per run than the product's direct start of the engine),
`bare` (the do-nothing flow: the engine alone), `limit=N`, `poll=S`; tokens combine with `+`.
The main measurement and every variant run on the same Prefect server and work pool, and the
pool is put back to the product's command after them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from sqlalchemy import func, select

from bench.context import Context
from bench.fixtures import (
    deploy_bare,
    epoch,
    joblogs_by_flow_run,
    last_per_pid,
    process_cpu,
    process_records,
    read_all_flow_runs,
    save_noop_jobs,
    through_supervisor,
    wait_final,
)
from bench.settings import Variant, product_worker, set_pool_command
from bench.stack import Service, admin_session, descendants, peak_rss_kb
from bench.stats import Section, Summary, fmt_number, table
from connecthub.db.engine import session_scope
from connecthub.db.models import JobLog
from deployments.client import prefect_client
from deployments.runs import run_now
from deployments.sync import ENGINE_COMMAND

TITLE = "5. Throughput and memory: one worker"
TARGET_RUNS_PER_MINUTE = 30.0
JOBS = 24
WARMUP_SECONDS = 20
VARIANT_WARMUP_SECONDS = 15
DRAIN_TIMEOUT = 300
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Outcome:
    variant: Variant
    minutes: float
    completed_in_window: int = 0
    started_runs: int = 0
    accounted: int = 0
    problems: list[str] = field(default_factory=list)
    latency: Summary = field(default_factory=lambda: Summary.of([]))
    peak_concurrency: int = 0
    through_supervisor: int = 0
    peaks_kb: dict[str, int] = field(default_factory=dict)
    flow_peak_kb: Summary = field(default_factory=lambda: Summary.of([]))
    cpu: dict[str, float] = field(default_factory=dict)
    admin_latency: Summary = field(default_factory=lambda: Summary.of([]))

    @property
    def per_minute(self) -> float:
        return self.completed_in_window / self.minutes if self.minutes else 0.0


# --- CPU accounting ---------------------------------------------------------------------


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds since boot, all cores."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


def _process_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def _postgres_cpu() -> dict[int, float]:
    """CPU seconds of every PostgreSQL process now running, by pid."""
    found: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as comm:
                if comm.read().strip() != "postgres":
                    continue
        except OSError:
            continue
        found[int(entry)] = _process_cpu(int(entry))
    return found


@dataclass
class CpuSnapshot:
    busy: float
    total: float
    worker: float
    server: float
    postgres: dict[int, float]
    bench: float

    @classmethod
    def take(cls, worker: Service, server: Service) -> CpuSnapshot:
        busy, total = _machine_cpu()
        return cls(busy, total, _process_cpu(worker.pid), _process_cpu(server.pid),
                   _postgres_cpu(), _process_cpu(os.getpid()))


# --- one measurement --------------------------------------------------------------------


def _finished_count(kind: str, client: SyncPrefectClient, started_ids: list[str]) -> int:
    """Runs that reached a final state: of `started_ids` (bare), or all no-op jobs' JobLogs."""
    if kind == "bare":
        runs = _runs_by_ids(client, started_ids)
        return sum(1 for run in runs if run.state is not None and run.state.is_final())
    with session_scope() as session:
        return session.scalar(
            select(func.count()).select_from(JobLog).where(
                JobLog.job_id.like("bench.tp-%"),
                JobLog.status.in_(["SUCCESS", "FAILED", "CRASHED", "CANCELLED"]),
            )
        ) or 0


def _runs_by_ids(client: SyncPrefectClient, ids: list[str]) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs: list[Any] = []
    for offset in range(0, len(ids), 200):
        chunk = [UUID(i) for i in ids[offset : offset + 200]]
        runs += read_all_flow_runs(
            client, flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)))
    return runs


def _measure(ctx: Context, variant: Variant, minutes: float, warmup: float,
             admin: Service | None, bare_id: UUID | None, job_ids: list[str]) -> Outcome:
    engine = ctx.engine()
    outcome = Outcome(variant, minutes)
    with prefect_client() as client:
        set_pool_command(client, supervisor=variant.supervisor)
    name = "tp-" + "".join(c if c.isalnum() else "-" for c in variant.label)
    worker = ctx.restart_worker(name, limit=variant.limit, **variant.env)
    admin_client = admin_session(admin.url) if admin else None
    kind = "bare" if variant.bare else "connecthub"
    started_ids: list[str] = []
    trigger_times: dict[str, float] = {}
    with prefect_client() as client:
        finished_before = _finished_count(kind, client, []) if kind == "connecthub" else 0
    begin = time.time()
    window_start = begin + warmup
    window_end = window_start + minutes * 60
    cpu_start: CpuSnapshot | None = None
    next_admin = begin
    admin_samples: list[float] = []
    with prefect_client() as client:
        while True:
            now = time.time()
            if cpu_start is None and now >= window_start:
                cpu_start = CpuSnapshot.take(worker, engine.server)
            if now >= window_end:
                break
            finished = _finished_count(kind, client, started_ids) - finished_before
            while len(started_ids) - finished < variant.outstanding:
                if kind == "bare":
                    flow_run_id = str(client.create_flow_run_from_deployment(bare_id).id)
                else:
                    job_id = job_ids[len(started_ids) % len(job_ids)]
                    flow_run_id = str(run_now(job_id).flow_run_id)
                started_ids.append(flow_run_id)
                trigger_times[flow_run_id] = time.time()
            outcome.peak_concurrency = max(outcome.peak_concurrency,
                                           len(descendants(worker.pid)))
            if admin_client is not None and now >= next_admin:
                t0 = time.perf_counter()
                admin_client.get("/admin/job-log/list")
                admin_samples.append(time.perf_counter() - t0)
                next_admin = now + 2
            time.sleep(0.5)
        cpu_end = CpuSnapshot.take(worker, engine.server)
        runs = {str(run.id): run for run in
                wait_final(client, started_ids, DRAIN_TIMEOUT, poll=1).values()}
    if admin_client is not None:
        admin_client.close()
    outcome.started_runs = len(started_ids)
    outcome.admin_latency = Summary.of(admin_samples)

    # Completions in the window, and accounting of every run started.
    ends: dict[str, float | None] = {}
    if kind == "connecthub":
        logs = joblogs_by_flow_run(started_ids)
        for flow_run_id in started_ids:
            rows = logs.get(flow_run_id, [])
            run = runs.get(flow_run_id)
            prefect_ok = run is not None and run.state is not None and run.state.is_completed()
            if len(rows) == 1 and rows[0].status == "SUCCESS" and prefect_ok:
                outcome.accounted += 1
                ends[flow_run_id] = epoch(rows[0].finished_at)
            else:
                outcome.problems.append(
                    f"{flow_run_id}: {len(rows)} JobLog rows "
                    f"({', '.join(r.status for r in rows)}), Prefect "
                    f"{run.state.type.value if run and run.state else 'unknown'}"
                )
    else:
        for flow_run_id in started_ids:
            run = runs.get(flow_run_id)
            if run is not None and run.state is not None and run.state.is_completed():
                outcome.accounted += 1
                ends[flow_run_id] = epoch(run.state.timestamp)
            else:
                outcome.problems.append(f"{flow_run_id}: not Completed")
    outcome.completed_in_window = sum(
        1 for end in ends.values() if end is not None and window_start <= end < window_end
    )
    outcome.latency = Summary.of(
        end - trigger_times[i] for i, end in ends.items() if end is not None
    )

    # Memory and CPU.
    records = [r for i in started_ids for r in process_records(ctx.stack.process_log_dir, i)]
    outcome.flow_peak_kb = Summary.of(r["vmhwm_kb"] for r in records if r.get("vmhwm_kb"))
    outcome.through_supervisor = sum(
        through_supervisor(process_records(ctx.stack.process_log_dir, i)) for i in started_ids
    )
    outcome.peaks_kb = {
        "worker": peak_rss_kb(worker.pid) or 0,
        "Prefect server": peak_rss_kb(engine.server.pid) or 0,
    }
    if admin is not None:
        outcome.peaks_kb["admin"] = peak_rss_kb(admin.pid) or 0
    if cpu_start is not None:
        in_window = [r for r in last_per_pid(records) if window_start <= r["exited"] < window_end]
        outcome.cpu = {
            "machine busy": cpu_end.busy - cpu_start.busy,
            "machine total": cpu_end.total - cpu_start.total,
            "flow processes": process_cpu(in_window),
            "worker": cpu_end.worker - cpu_start.worker,
            "Prefect server": cpu_end.server - cpu_start.server,
            # Backends that ended inside the window took their CPU time with them: a lower bound.
            "PostgreSQL (all databases, at least)": sum(
                seconds - cpu_start.postgres.get(pid, 0.0)
                for pid, seconds in cpu_end.postgres.items()
            ),
            "bench process (feeder)": cpu_end.bench - cpu_start.bench,
        }
    return outcome


# --- the benchmark ----------------------------------------------------------------------


def run(ctx: Context) -> Section:
    section = Section("throughput", TITLE)
    config = ctx.config
    ctx.engine()
    job_ids = [f"bench.tp-{i:02d}" for i in range(JOBS)]
    save_noop_jobs(job_ids)
    with prefect_client() as client:
        bare_id = deploy_bare(client, "throughput")
    admin = ctx.stack.admin("admin-throughput")
    main_variant = Variant(f"limit={config.worker_limit}", config.worker_limit)
    main = _measure(ctx, main_variant, config.throughput_minutes, WARMUP_SECONDS, admin,
                    bare_id, job_ids)
    variants = []
    for text in config.variants:
        variant = Variant.parse(text, config.worker_limit)
        variants.append(_measure(ctx, variant, config.variant_minutes, VARIANT_WARMUP_SECONDS,
                                 None, bare_id, job_ids))
    with prefect_client() as client:
        set_pool_command(client, supervisor=False)
    ctx.restart_worker("main-again")  # product defaults again for whatever runs next
    ctx.stack.stop(admin)

    section.add(
        f"Runs per minute, one worker (--limit {config.worker_limit}), "
        f"{fmt_number(config.throughput_minutes, 1)} min",
        f"{fmt_number(main.per_minute, 1)} ({main.completed_in_window} runs)",
        f"≥ {TARGET_RUNS_PER_MINUTE:g}", ok=main.per_minute >= TARGET_RUNS_PER_MINUTE,
    )
    section.add("Runs accounted for in JobLog (exactly one row, SUCCESS; Completed in Prefect)",
                f"{main.accounted} of {main.started_runs}", "all",
                ok=main.accounted == main.started_runs and main.started_runs > 0)
    section.add("Trigger → JobLog SUCCESS under this load", main.latency.fmt("s", 1))
    section.add("Most flow processes at once", str(main.peak_concurrency))
    for name, kb in main.peaks_kb.items():
        section.add(f"Peak RSS (VmHWM): {name}", f"{fmt_number(kb / 1024, 0)} MiB")
    section.add("Peak RSS (VmHWM): one flow-run process",
                Summary.of(v / 1024 for v in main.flow_peak_kb.samples).fmt("MiB", 0))
    section.add("Admin JobLog list latency during the run (one request every 2 s)",
                main.admin_latency.fmt_p("ms", 1, 1000))
    if main.problems:
        section.note("Runs not accounted for: " + "; ".join(main.problems[:20]))
    section.note(_cpu_note(main, config.worker_limit))
    rows = []
    for outcome in [main, *variants]:
        cpu_per_run = (outcome.cpu.get("machine busy", 0) / outcome.completed_in_window
                       if outcome.completed_in_window else float("nan"))
        busy_share = (outcome.cpu.get("machine busy", 0) / outcome.cpu["machine total"] * 100
                      if outcome.cpu.get("machine total") else float("nan"))
        rows.append([
            f"`{outcome.variant.label}`" + (" (main)" if outcome is main else ""),
            fmt_number(outcome.minutes, 1),
            fmt_number(outcome.per_minute, 1),
            f"{outcome.accounted}/{outcome.started_runs}",
            outcome.latency.fmt("s", 1),
            str(outcome.peak_concurrency),
            f"{outcome.through_supervisor}/{outcome.started_runs}",
            fmt_number(busy_share, 0) + " %",
            fmt_number(cpu_per_run, 2),
        ])
    section.note(
        "**Worker settings** (each variant changes one thing against the main measurement):\n\n"
        + table(["variant", "minutes", "runs/min", "accounted", "trigger → end",
                 "most at once", "via supervisor", "CPU busy", "CPU-s per run"], rows)
        + "\n\nThe main measurement has the product's worker and pool: `connecthub worker` "
        f"with {product_worker()}, and the pool's runs started as `{ENGINE_COMMAND}`. "
        "`limit=N`: `connecthub worker --limit N`; `poll=S`: PREFECT_WORKER_QUERY_SECONDS"
        " and PREFECT_WORKER_PREFETCH_SECONDS = S (Prefect's defaults are 10 s each);"
        " `supervisor`: the pool's job template leaves `command` unset, so the worker starts "
        "Prefect's workspace supervisor, which then execs the engine (ConnectHub's pool before "
        "it set the command); `bare`: the do-nothing flow (engine alone). For `bare` the end "
        "of a run is its Completed state. \"via supervisor\": runs whose process Prefect's "
        "workspace supervisor started (recorded by bench/_hook)."
    )
    return section


def _cpu_note(outcome: Outcome, limit: int) -> str:
    cpu = outcome.cpu
    if not cpu or not outcome.completed_in_window:
        return "No CPU figures (the window was empty)."
    runs = outcome.completed_in_window
    busy = cpu["machine busy"]
    known = sum(value for key, value in cpu.items() if key not in ("machine busy",
                                                                   "machine total"))
    rows = [[key, fmt_number(value, 1), fmt_number(value / runs, 2),
             fmt_number(value / busy * 100, 0) + " %"]
            for key, value in cpu.items() if key not in ("machine busy", "machine total")]
    rows.append(["everything else on the machine", fmt_number(busy - known, 1),
                 fmt_number((busy - known) / runs, 2),
                 fmt_number((busy - known) / busy * 100, 0) + " %"])
    rows.append(["**machine busy**", fmt_number(busy, 1), fmt_number(busy / runs, 2), "100 %"])
    cores = os.cpu_count() or 1
    ceiling = cores * 60 / (busy / runs)
    return (
        f"**Where the CPU goes** during the {fmt_number(outcome.minutes, 1)}-minute window "
        f"(--limit {limit}; the machine was {fmt_number(busy / cpu['machine total'] * 100, 0)} % "
        f"busy over {cores} cores):\n\n"
        + table(["", "CPU seconds", "per run", "share"], rows)
        + f"\n\nAt {fmt_number(busy / runs, 2)} CPU-seconds per run, {cores} cores allow at most "
        f"≈ {fmt_number(ceiling, 0)} runs per minute if nothing else ran."
    )
