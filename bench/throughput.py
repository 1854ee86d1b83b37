"""Benchmark 5: runs per minute one worker sustains, CPU per run, and memory.

A feeder keeps the worker busy: it starts manual runs of no-op jobs (`run_now`, round-robin over
JOBS jobs, so that no job's own concurrency limit of 1 holds a run back) whenever fewer than
`2 x --worker-limit` runs are unfinished, for a warm-up and then `--throughput-minutes`. Runs
per minute = JobLog rows that turned SUCCESS inside the timed window / its minutes. Then the
feeder stops, every started run is waited for, and each must have exactly one JobLog row, in
SUCCESS (and Completed in Prefect). An admin process serves a JobLog list request every 2 s
meanwhile, so its memory and latency are measured under load.

CPU per run: the CPU time spent during the window (from /proc) by the worker's own processes
(`connecthub worker`, Prefect's worker, the fork server), the runs' processes (live, or reaped
by Prefect's worker or the fork server), the Prefect server and PostgreSQL (all of its
processes and exited backends, so other databases' load counts too), divided by the runs
completed in the window; also machine-wide busy time (/proc/stat) and the ceiling it implies.

Variants (`--variants`, each `--variant-minutes`, same --limit) change one setting
(bench/settings.py) and report the same figures: `cold` (the old path: every run a fresh
`python -m prefect.engine`), `bare` (the do-nothing flow on Prefect's own worker and pool: the
baseline of the CPU-per-run target), `limit=N`, `poll=S`, `supervisor`; tokens combine with `+`.
The main measurement and every variant run on the same Prefect server.

Memory: the fork server's RSS and PSS when its worker starts, after the first 100 runs and after
`--leak-runs` runs (the main measurement's runs, and more until that many were forked: no
leak); the PSS (/proc/<pid>/smaps_rollup) of `--memory-children` concurrent run processes,
forked (sharing the fork server's pages copy-on-write) and cold; peak RSS (VmHWM) of the worker,
the Prefect server, the admin and of every run process (recorded by bench/_hook as it exits).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from sqlalchemy import func, select

from bench.context import Context, Engine
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
    was_forked,
)
from bench.plugins import SLEEP_HANDLER_PATH
from bench.settings import Variant, product_worker
from bench.stack import (
    CLOCK_TICKS,
    Service,
    admin_session,
    children,
    forkserver_pid,
    is_prefect_worker,
    peak_rss_kb,
    postgres_cpu,
    rss_kb,
    run_processes,
    runs_in_flight,
    smaps_rollup,
    tree_cpu,
    wait_idle,
    worker_cpu,
)
from bench.stats import Section, Summary, fmt_number, table
from connecthub.db.engine import session_scope
from connecthub.db.models import JobLog
from deployments.client import prefect_client
from deployments.runs import run_now
from deployments.sync import POOL_COMMAND

TITLE = "5. Throughput and memory: one worker"
TARGET_RUNS_PER_MINUTE = 90.0
TARGET_CPU_RATIO = 0.4
LEAK_TARGET_KB = 2048  # fork server RSS growth over --leak-runs runs: under ~2 KB per run
LEAK_EARLY_RUNS = 100  # a second "before": allocator arenas and caches filled by the first runs
JOBS = 24
WARMUP_SECONDS = 20
VARIANT_WARMUP_SECONDS = 15
DRAIN_TIMEOUT = 300
FORKSERVER_SAMPLE_SECONDS = 10
MEMORY_SLEEP_SECONDS = 30  # each run of the memory measurement sleeps this long in its body
MEMORY_START_TIMEOUT = 90
# The CPU parts the target sums, and the others that are measured.
TARGET_PARTS = ("worker", "run processes", "Prefect server", "PostgreSQL")
OTHER_PARTS = ("admin", "bench process (feeder, PostgreSQL sampler)")
ALL_POSTGRES = "PostgreSQL, all databases (other test suites' too)"
FORKED_LINE = re.compile(rb"fork server (\d+) forked pid")


@dataclass
class ForkServerMemory:
    """RSS (and PSS) of one fork server, sampled against the runs it has forked."""

    pid: int
    samples: list[tuple[int, int]] = field(default_factory=list)  # (runs forked, RSS kB)
    pss_start_kb: int = 0
    pss_end_kb: int = 0
    restarted: bool = False

    def rss_after(self, runs: int) -> tuple[int, int] | None:
        """The first sample taken once `runs` runs were forked: (runs, RSS kB)."""
        return next((sample for sample in self.samples if sample[0] >= runs), None)


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
    forked: int = 0
    peaks_kb: dict[str, int] = field(default_factory=dict)
    flow_peak_kb: Summary = field(default_factory=lambda: Summary.of([]))
    cpu: dict[str, float] = field(default_factory=dict)
    admin_latency: Summary = field(default_factory=lambda: Summary.of([]))
    forkserver: ForkServerMemory | None = None

    @property
    def per_minute(self) -> float:
        return self.completed_in_window / self.minutes if self.minutes else 0.0

    @property
    def cpu_per_run(self) -> float:
        """The target's CPU-seconds per run: worker + run processes + server + PostgreSQL."""
        if not self.cpu or not self.completed_in_window:
            return float("nan")
        return sum(self.cpu[part] for part in TARGET_PARTS) / self.completed_in_window


# --- CPU accounting ---------------------------------------------------------------------


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds since boot, all cores."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


@dataclass
class CpuSnapshot:
    busy: float
    total: float
    parts: dict[str, float]

    @classmethod
    def take(cls, engine: Engine, admin: Service | None) -> CpuSnapshot:
        busy, total = _machine_cpu()
        own, runs = worker_cpu(engine.worker.pid)
        bench = os.times()
        return cls(busy, total, {
            "worker": own,
            "run processes": runs,
            "Prefect server": tree_cpu(engine.server.pid),
            "PostgreSQL": engine.postgres.total(),
            "admin": tree_cpu(admin.pid) if admin else 0.0,
            "bench process (feeder, PostgreSQL sampler)": bench.user + bench.system,
            ALL_POSTGRES: postgres_cpu(),
        })


# --- one measurement --------------------------------------------------------------------


def _finished_joblogs() -> int:
    """The no-op jobs' JobLog rows in a final state."""
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


def _forked_runs(worker: Service, pid: int) -> int:
    """Runs the fork server `pid` has forked, from its log lines in the worker's log."""
    return sum(1 for match in FORKED_LINE.finditer(worker.log_path.read_bytes())
               if int(match.group(1)) == pid)


class Feeder:
    """Keeps `variant.outstanding` runs unfinished: manual runs of the no-op jobs, or of the
    bare deployment."""

    def __init__(self, client: SyncPrefectClient, variant: Variant, bare_id: UUID,
                 job_ids: list[str]) -> None:
        self.client = client
        self.variant = variant
        self.bare_id = bare_id
        self.job_ids = job_ids
        self.started_ids: list[str] = []
        self.trigger_times: dict[str, float] = {}
        self.final: set[str] = set()  # bare runs seen in a final state
        self.finished_before = 0 if variant.bare else _finished_joblogs()

    def finished(self) -> int:
        """Runs started here that reached a final state (JobLog for ConnectHub's; Prefect's
        state for bare runs, reading the unfinished ones only, so that the feeder's polling
        costs the Prefect server about as little as counting JobLog rows costs PostgreSQL)."""
        if not self.variant.bare:
            return _finished_joblogs() - self.finished_before
        waiting = [i for i in self.started_ids if i not in self.final]
        self.final.update(str(run.id) for run in _runs_by_ids(self.client, waiting)
                          if run.state is not None and run.state.is_final())
        return len(self.final)

    def feed(self, stop: Callable[[float], bool], tick: Callable[[float], None]) -> None:
        while True:
            now = time.time()
            tick(now)
            if stop(now):
                return
            finished = self.finished()
            while len(self.started_ids) - finished < self.variant.outstanding:
                if self.variant.bare:
                    flow_run_id = str(self.client.create_flow_run_from_deployment(
                        self.bare_id).id)
                else:
                    job_id = self.job_ids[len(self.started_ids) % len(self.job_ids)]
                    flow_run_id = str(run_now(job_id).flow_run_id)
                self.started_ids.append(flow_run_id)
                self.trigger_times[flow_run_id] = time.time()
            time.sleep(0.5)


def _measure(ctx: Context, variant: Variant, minutes: float, warmup: float,
             admin: Service | None, bare_id: UUID, job_ids: list[str],
             leak_runs: int = 0) -> Outcome:
    """One window of `minutes` after `warmup`; with `leak_runs`, also the fork server's memory
    until it has forked that many runs (feeding more runs after the window if needed)."""
    engine = ctx.engine()
    outcome = Outcome(variant, minutes)
    name = "tp-" + "".join(c if c.isalnum() else "-" for c in variant.label)
    worker = ctx.use_worker(variant, name)
    server_pid = forkserver_pid(worker.pid) if leak_runs else None
    memory = ForkServerMemory(server_pid) if server_pid else None
    if memory is not None:
        memory.samples.append((0, rss_kb(memory.pid) or 0))
        memory.pss_start_kb = smaps_rollup(memory.pid).get("Pss", 0)
    admin_client = admin_session(admin.url) if admin else None
    begin = time.time()
    window_start = begin + warmup
    window_end = window_start + minutes * 60
    cpu_start: CpuSnapshot | None = None
    next_admin = begin
    next_sample = begin
    admin_samples: list[float] = []

    def tick(now: float) -> None:
        nonlocal cpu_start, next_admin, next_sample
        if cpu_start is None and now >= window_start:
            cpu_start = CpuSnapshot.take(engine, admin)
        outcome.peak_concurrency = max(outcome.peak_concurrency,
                                       len(runs_in_flight(worker.pid)))
        if admin_client is not None and now >= next_admin:
            t0 = time.perf_counter()
            admin_client.get("/admin/job-log/list")
            admin_samples.append(time.perf_counter() - t0)
            next_admin = now + 2
        if memory is not None and now >= next_sample:
            memory.samples.append((_forked_runs(worker, memory.pid), rss_kb(memory.pid) or 0))
            next_sample = now + FORKSERVER_SAMPLE_SECONDS

    with prefect_client() as client:
        feeder = Feeder(client, variant, bare_id, job_ids)
        feeder.feed(lambda now: now >= window_end, tick)
        cpu_end = CpuSnapshot.take(engine, admin)
        if memory is not None:  # more runs, untimed, until the leak check has its runs
            feeder.feed(lambda now: _forked_runs(worker, memory.pid) >= leak_runs,
                        lambda now: None)
        started_ids = feeder.started_ids
        runs = {str(run.id): run for run in
                wait_final(client, started_ids, DRAIN_TIMEOUT, poll=1).values()}
    wait_idle(worker.pid, timeout=30)
    if memory is not None:
        memory.samples.append((_forked_runs(worker, memory.pid), rss_kb(memory.pid) or 0))
        memory.pss_end_kb = smaps_rollup(memory.pid).get("Pss", 0)
        memory.restarted = forkserver_pid(worker.pid) != memory.pid
        outcome.forkserver = memory
    if admin_client is not None:
        admin_client.close()
    outcome.started_runs = len(started_ids)
    outcome.admin_latency = Summary.of(admin_samples)

    # Completions in the window, and accounting of every run started.
    ends: dict[str, float | None] = {}
    if not variant.bare:
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
        end - feeder.trigger_times[i] for i, end in ends.items() if end is not None
    )

    # Memory and CPU.
    per_run = {i: process_records(ctx.stack.process_log_dir, i) for i in started_ids}
    records = [record for found in per_run.values() for record in found]
    outcome.flow_peak_kb = Summary.of(r["vmhwm_kb"] for r in records
                                      if r.get("vmhwm_kb") and r.get("role") != "launcher")
    outcome.through_supervisor = sum(through_supervisor(found) for found in per_run.values())
    outcome.forked = sum(was_forked(found) for found in per_run.values())
    # `connecthub worker` and its children: Prefect's worker and the fork server.
    outcome.peaks_kb = {"`connecthub worker`": peak_rss_kb(worker.pid) or 0}
    for pid in children(worker.pid):
        if is_prefect_worker(pid):
            outcome.peaks_kb["Prefect's worker process"] = peak_rss_kb(pid) or 0
        elif pid == forkserver_pid(worker.pid):
            outcome.peaks_kb["fork server"] = peak_rss_kb(pid) or 0
    outcome.peaks_kb["Prefect server"] = peak_rss_kb(engine.server.pid) or 0
    if admin is not None:
        outcome.peaks_kb["admin"] = peak_rss_kb(admin.pid) or 0
    if cpu_start is not None:
        outcome.cpu = {
            "machine busy": cpu_end.busy - cpu_start.busy,
            "machine total": cpu_end.total - cpu_start.total,
            **{part: cpu_end.parts[part] - cpu_start.parts[part] for part in cpu_end.parts},
        }
        in_window = [r for r in last_per_pid(records) if window_start <= r["exited"] < window_end]
        outcome.cpu["run processes (bench/_hook, for comparison)"] = process_cpu(in_window)
    return outcome


# --- memory of concurrent run processes -------------------------------------------------


@dataclass
class Concurrent:
    """The memory of `count` run processes alive at once, each in its flow's body."""

    label: str
    count: int = 0
    processes: list[dict[str, int]] = field(default_factory=list)  # smaps_rollup of each
    launchers: list[dict[str, int]] = field(default_factory=list)
    forkserver: dict[str, int] = field(default_factory=dict)

    def total_pss_kb(self) -> int:
        return sum(p.get("Pss", 0) for p in [*self.processes, *self.launchers, self.forkserver])


def _concurrent(ctx: Context, variant: Variant, job_ids: list[str]) -> Concurrent:
    """Start one sleeping run per job at once and read the memory of their processes while
    they all sleep in their bodies."""
    result = Concurrent(variant.label)
    worker = ctx.use_worker(variant, "memory-" + variant.label.replace("+", "-"))
    flow_run_ids = [str(run_now(job_id).flow_run_id) for job_id in job_ids]
    deadline = time.monotonic() + MEMORY_START_TIMEOUT
    running = 0
    while time.monotonic() < deadline:
        logs = joblogs_by_flow_run(flow_run_ids)
        running = sum(1 for rows in logs.values() if any(r.status == "RUNNING" for r in rows))
        if running == len(flow_run_ids):
            break
        time.sleep(0.5)
    server = forkserver_pid(worker.pid)
    # The run processes: forked from the fork server (warm), or the processes Prefect's worker
    # started (cold), which also are the launchers of forked ones.
    started = runs_in_flight(worker.pid)
    forked = children(server) if server else []
    result.count = running
    result.processes = [smaps_rollup(pid) for pid in (forked or started)]
    if forked:
        result.launchers = [smaps_rollup(pid) for pid in started]
        result.forkserver = smaps_rollup(server) if server else {}
    with prefect_client() as client:
        wait_final(client, flow_run_ids, MEMORY_SLEEP_SECONDS + 120, poll=1)
    wait_idle(worker.pid, timeout=30)
    if run_processes(worker.pid):
        raise RuntimeError("run processes left after the memory measurement")
    return result


def _memory_note(results: list[Concurrent], children_wanted: int) -> tuple[str, str]:
    """(figure, note) for the concurrent run processes' memory."""
    rows = []
    for result in results:
        pss = Summary.of(p.get("Pss", 0) / 1024 for p in result.processes)
        uss = Summary.of((p.get("Private_Clean", 0) + p.get("Private_Dirty", 0)) / 1024
                         for p in result.processes)
        rss = Summary.of(p.get("Rss", 0) / 1024 for p in result.processes)
        launchers = Summary.of(p.get("Pss", 0) / 1024 for p in result.launchers)
        rows.append([
            f"`{result.label}`", f"{result.count} of {children_wanted}",
            fmt_number(rss.median, 1), fmt_number(pss.median, 1), fmt_number(uss.median, 1),
            fmt_number(launchers.median, 1) if result.launchers else "—",
            fmt_number(result.forkserver.get("Pss", 0) / 1024, 1) if result.forkserver else "—",
            fmt_number(result.total_pss_kb() / 1024, 0),
        ])
    warm, cold = results[0], results[-1]
    ratio = (warm.total_pss_kb() / cold.total_pss_kb()
             if len(results) > 1 and cold.total_pss_kb() else float("nan"))
    figure = (f"{fmt_number(warm.total_pss_kb() / 1024, 0)} MiB warm (fork server included) vs "
              f"{fmt_number(cold.total_pss_kb() / 1024, 0)} MiB cold: {fmt_number(ratio, 2)}x")
    note = (
        f"**Memory of {children_wanted} concurrent run processes** (each a run of a job that "
        f"sleeps {MEMORY_SLEEP_SECONDS} s in its body, all started at once on a worker without "
        "--limit; read from /proc/<pid>/smaps_rollup once all were in their bodies; MiB, "
        "medians per process; USS = private pages; PSS charges a page shared by k processes "
        "1/k to each):\n\n"
        + table(["worker", "in their bodies at once", "RSS", "PSS", "USS",
                 "launcher PSS", "fork server PSS", "total PSS (all processes)"], rows)
    )
    return figure, note


# --- the benchmark ----------------------------------------------------------------------


def run(ctx: Context) -> Section:
    section = Section("throughput", TITLE)
    config = ctx.config
    ctx.engine()
    job_ids = [f"bench.tp-{i:02d}" for i in range(JOBS)]
    save_noop_jobs(job_ids)
    memory_jobs = [f"bench.mem-{i:02d}" for i in range(config.memory_children)]
    save_noop_jobs(memory_jobs, handler_path=SLEEP_HANDLER_PATH,
                   public_cfg={"seconds": MEMORY_SLEEP_SECONDS})
    with prefect_client() as client:
        bare_id = deploy_bare(client, "throughput")
    admin = ctx.stack.admin("admin-throughput")
    main_variant = Variant(f"limit={config.worker_limit}", config.worker_limit)
    main = _measure(ctx, main_variant, config.throughput_minutes, WARMUP_SECONDS, admin,
                    bare_id, job_ids, leak_runs=config.leak_runs)
    variants = []
    for text in config.variants:
        variant = Variant.parse(text, config.worker_limit)
        variants.append(_measure(ctx, variant, config.variant_minutes, VARIANT_WARMUP_SECONDS,
                                 None, bare_id, job_ids))
    concurrent = [_concurrent(ctx, Variant.parse(text, None), memory_jobs)
                  for text in ("connecthub", "cold")]
    ctx.restore_worker("main-again")  # product defaults again for whatever runs next
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
    by_label = {outcome.variant.label: outcome for outcome in variants}
    for text in ("cold", "bare"):
        if text in by_label:
            section.add(f"Runs per minute, `{text}` (same --limit), "
                        f"{fmt_number(config.variant_minutes, 1)} min",
                        f"{fmt_number(by_label[text].per_minute, 1)} "
                        f"({by_label[text].completed_in_window} runs); warm / {text} "
                        f"{fmt_number(main.per_minute / by_label[text].per_minute, 2)}x"
                        if by_label[text].per_minute else "no run completed")
    cpu_target = f"≤ {TARGET_CPU_RATIO:g}x bare"
    cpu_value = f"{fmt_number(main.cpu_per_run, 2)} s"
    if "bare" in by_label:
        bare = by_label["bare"]
        ratio = main.cpu_per_run / bare.cpu_per_run
        cpu_value += (f" vs bare {fmt_number(bare.cpu_per_run, 2)} s: "
                      f"{fmt_number(ratio, 2)}x")
        section.add("CPU per run (worker + run processes + Prefect server + PostgreSQL), "
                    "main / bare", cpu_value, cpu_target, ok=ratio <= TARGET_CPU_RATIO)
    else:
        section.add("CPU per run (worker + run processes + Prefect server + PostgreSQL)",
                    cpu_value + " (no `bare` variant ran: no ratio)")
    if "cold" in by_label:
        cold = by_label["cold"]
        section.add("CPU per run, old path: `cold`, and warm / cold",
                    f"{fmt_number(cold.cpu_per_run, 2)} s; "
                    f"{fmt_number(main.cpu_per_run / cold.cpu_per_run, 2)}x")
    _leak_figures(section, main.forkserver, config.leak_runs)
    figure, memory_note = _memory_note(concurrent, config.memory_children)
    section.add(f"Memory of {config.memory_children} concurrent run processes (total PSS)",
                figure)
    section.add("Trigger → JobLog SUCCESS under this load", main.latency.fmt("s", 1))
    section.add("Most runs in flight at once", str(main.peak_concurrency))
    for name, kb in main.peaks_kb.items():
        section.add(f"Peak RSS (VmHWM): {name}", f"{fmt_number(kb / 1024, 0)} MiB")
    section.add("Peak RSS (VmHWM): one run process (forked: counts the pages it shares with "
                "the fork server)",
                Summary.of(v / 1024 for v in main.flow_peak_kb.samples).fmt("MiB", 0))
    section.add("Admin JobLog list latency during the run (one request every 2 s)",
                main.admin_latency.fmt_p("ms", 1, 1000))
    for outcome in [main, *variants]:
        if outcome.problems:
            section.note(f"Runs not accounted for, `{outcome.variant.label}`: "
                         + "; ".join(outcome.problems[:20]))
    section.note(_cpu_note([main, *variants], config.worker_limit))
    section.note(memory_note)
    rows = []
    for outcome in [main, *variants]:
        busy_share = (outcome.cpu.get("machine busy", 0) / outcome.cpu["machine total"] * 100
                      if outcome.cpu.get("machine total") else float("nan"))
        rows.append([
            f"`{outcome.variant.label}`" + (" (main)" if outcome is main else ""),
            outcome.variant.path,
            fmt_number(outcome.minutes, 1),
            fmt_number(outcome.per_minute, 1),
            f"{outcome.accounted}/{outcome.started_runs}",
            outcome.latency.fmt("s", 1),
            str(outcome.peak_concurrency),
            f"{outcome.forked}/{outcome.through_supervisor}/{outcome.started_runs}",
            fmt_number(busy_share, 0) + " %",
            fmt_number(outcome.cpu_per_run, 2),
        ])
    section.note(
        "**Worker settings** (each variant changes one thing against the main measurement):\n\n"
        + table(["variant", "runs start", "minutes", "runs/min", "accounted", "trigger → end",
                 "most in flight", "forked / via supervisor / all", "machine busy",
                 "CPU-s per run (target's sum)"], rows)
        + "\n\nThe main measurement has the product's worker and pool: `connecthub worker` "
        f"with {product_worker()}, and the pool's runs started as `{POOL_COMMAND}`. "
        "`cold`: CONNECTHUB_WARM_START=false (no fork server; the launcher execs a fresh "
        "`python -m prefect.engine`); `bare`: the do-nothing flow on its own pool with "
        "Prefect's default job template, served by `prefect worker start` with the same "
        "--limit and polling settings (its runs go through Prefect's workspace supervisor); "
        "`limit=N`: `--limit N`; `poll=S`: PREFECT_WORKER_QUERY_SECONDS and "
        "PREFECT_WORKER_PREFETCH_SECONDS = S; `supervisor`: ConnectHub's pool's job template "
        "leaves `command` unset. For `bare` the end of a run is its Completed state. "
        "\"forked / via supervisor\": runs whose process was forked from the fork server, or "
        "started by Prefect's workspace supervisor (recorded by bench/_hook)."
    )
    return section


def _leak_figures(section: Section, memory: ForkServerMemory | None, runs: int) -> None:
    if memory is None:
        section.add("Fork server memory over runs", "no fork server (warm start off?)",
                    "no leak", ok=False)
        return
    start = memory.samples[0][1]
    early = memory.rss_after(LEAK_EARLY_RUNS)
    end = memory.samples[-1]
    section.add("Fork server RSS when its worker starts (no run yet), PSS",
                f"{fmt_number(start / 1024, 1)} MiB RSS, "
                f"{fmt_number(memory.pss_start_kb / 1024, 1)} MiB PSS")
    growth = end[1] - start
    section.add(
        f"Fork server RSS after {end[0]:,} runs (no leak: growth over {runs:,} runs)",
        f"{fmt_number(end[1] / 1024, 1)} MiB: {'+' if growth >= 0 else ''}{growth:,} kB since "
        "start" + (f", {end[1] - early[1]:+,} kB since run {early[0]:,}" if early else "")
        + f"; PSS {fmt_number(memory.pss_end_kb / 1024, 1)} MiB"
        + (" (the fork server was restarted meanwhile)" if memory.restarted else ""),
        f"≥ {runs:,} runs, growth ≤ {LEAK_TARGET_KB // 1024} MiB",
        ok=end[0] >= runs and growth <= LEAK_TARGET_KB and not memory.restarted,
    )
    section.note(
        "Fork server RSS against the runs it had forked (sampled every "
        f"{FORKSERVER_SAMPLE_SECONDS} s during the timed window, and once all runs had ended): "
        + ", ".join(f"{count:,} runs {fmt_number(kb / 1024, 1)} MiB"
                    for count, kb in _thin(memory.samples, 12)) + "."
    )


def _thin(samples: list[tuple[int, int]], most: int) -> list[tuple[int, int]]:
    """At most `most` samples, evenly spread, the first and last kept."""
    if len(samples) <= most:
        return samples
    step = (len(samples) - 1) / (most - 1)
    return [samples[round(i * step)] for i in range(most)]


def _cpu_note(outcomes: list[Outcome], limit: int) -> str:
    measured = [outcome for outcome in outcomes if outcome.cpu and outcome.completed_in_window]
    if not measured:
        return "No CPU figures (the windows were empty)."
    parts = [*TARGET_PARTS, *OTHER_PARTS]
    rows = []
    for part in parts:
        rows.append([part, *(fmt_number(o.cpu[part] / o.completed_in_window, 3)
                             for o in measured)])
    rows.append(["**the target's sum** (worker + run processes + server + PostgreSQL)",
                 *(f"**{fmt_number(o.cpu_per_run, 3)}**" for o in measured)])
    rows.append(["run processes as bench/_hook records them (processes that exited in the "
                 "window; for comparison)",
                 *(fmt_number(o.cpu["run processes (bench/_hook, for comparison)"]
                              / o.completed_in_window, 3) for o in measured)])
    rows.append([ALL_POSTGRES, *(fmt_number(o.cpu[ALL_POSTGRES] / o.completed_in_window, 3)
                                 for o in measured)])
    rows.append(["everything else on the machine (other test suites, the kernel, ...)",
                 *(fmt_number((o.cpu["machine busy"] - sum(o.cpu[p] for p in parts))
                              / o.completed_in_window, 3) for o in measured)])
    rows.append(["**machine busy**",
                 *(fmt_number(o.cpu["machine busy"] / o.completed_in_window, 3)
                   for o in measured)])
    rows.append(["machine busy share",
                 *(fmt_number(o.cpu["machine busy"] / o.cpu["machine total"] * 100, 0) + " %"
                   for o in measured)])
    cores = os.cpu_count() or 1
    main = measured[0]
    ceiling = cores * 60 / main.cpu_per_run
    return (
        f"**Where the CPU goes** (CPU-seconds per run completed in each window, --limit "
        f"{limit}; {cores} cores):\n\n"
        + table(["", *(f"`{o.variant.label}`" for o in measured)], rows)
        + f"\n\nAt {fmt_number(main.cpu_per_run, 2)} CPU-seconds per run (the target's sum), "
        f"{cores} cores allow at most ≈ {fmt_number(ceiling, 0)} runs per minute if nothing "
        "else ran."
    )
