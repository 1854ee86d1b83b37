"""Benchmark 1: what a ConnectHub run costs against a bare Prefect run, and where the time goes.

Rounds of runs, one after another (the order rotated and reversed round by round, so that any
drift of the machine falls on every kind): a manual run of a no-op ConnectHub job on the
product's path (`deployments.runs.run_now`, until its JobLog row is SUCCESS; the product's
`connecthub worker`, its run process forked from the warm fork server), the same job on the old
path (`cold`: a `connecthub worker` with CONNECTHUB_WARM_START=false, whose launcher execs a
fresh `python -m prefect.engine`), and a run of a deployment of the do-nothing flow on Prefect
alone (`create_flow_run_from_deployment`, until Completed: its own pool with Prefect's default
job template, served by a plain `prefect worker start` with the same polling settings). The
three workers run side by side the whole time, each on a pool of its own (the cold worker's pool
is made by ConnectHub's sync, as the product's), so their idle polling falls on every kind
alike. Each run starts once every run process has exited. The time of a run is taken from
recorded timestamps (JobLog `finished_at`, Prefect's Completed state), so the polling interval
does not enter it.

The breakdown splits every kind of run with Prefect's state history, the run processes' own
start, fork or exec, exit, CPU and API calls (bench/_hook) and JobLog's started_at /
finished_at, and gives the CPU each run cost its worker, its processes, the Prefect server and
PostgreSQL; microbenchmarks in fresh interpreters add the cost of the imports, plugin load,
decryption and DB writes a cold run process pays.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.apicalls import count_api_calls
from bench.context import Context
from bench.fixtures import (
    RunTiming,
    deploy_bare,
    diff,
    fill_from_joblog,
    fill_from_prefect,
    fill_from_process,
    save_noop_jobs,
    wait_final,
)
from bench.settings import BARE_POOL, polling_env
from bench.stack import REPO_ROOT, Service, run_processes, tree_cpu, wait_idle
from bench.stack import worker_cpu as worker_tree_cpu
from bench.stats import Section, Summary, fmt_number, table
from connecthub.core.config import get_settings
from deployments.client import prefect_client
from deployments.runs import run_now
from tests.support.settings import use_settings

JOB_ID = "bench.noop"
COLD_JOB_ID = "bench.noop-cold"
CANDIDATE_JOB_ID = "bench.noop-candidate"
COLD_POOL = "bench-cold"  # the cold worker's pool: made by ConnectHub's sync, as the product's
RUN_TIMEOUT = 120
TARGET_RATIO = 0.6
TITLE = "1. Run overhead: ConnectHub vs a bare Prefect deployment"


LABELS = {
    "connecthub": "ConnectHub (warm)",
    "cold": "ConnectHub cold",
    "candidate": "candidate (cold)",
    "bare": "bare Prefect",
    "bare-limit": "bare + concurrency limit 1",
}
CONNECTHUB_KINDS = ("connecthub", "cold", "candidate")
JOBS = {"connecthub": JOB_ID, "cold": COLD_JOB_ID, "candidate": CANDIDATE_JOB_ID}
CPU_PARTS = ("worker", "run processes", "Prefect server", "PostgreSQL")


def run(ctx: Context) -> Section:
    section = Section("overhead", TITLE)
    engine = ctx.engine()
    candidate = ctx.config.candidate
    save_noop_jobs([JOB_ID])
    with _pool(COLD_POOL):
        save_noop_jobs([COLD_JOB_ID] + ([CANDIDATE_JOB_ID] if candidate else []))
    workers = {
        "connecthub": engine.worker,
        "cold": ctx.stack.worker("overhead-cold", CONNECTHUB_WARM_START="false",
                                 CONNECTHUB_WORK_POOL=COLD_POOL),
        "bare": ctx.stack.prefect_worker("overhead-bare", BARE_POOL, **polling_env()),
    }
    workers.update(candidate=workers["cold"], **{"bare-limit": workers["bare"]})
    kinds = ["connecthub", "cold", "bare", *(["candidate"] if candidate else []), "bare-limit"]
    try:
        with prefect_client() as client:
            deployment_ids = {
                "bare": deploy_bare(client, "bare"),
                "bare-limit": deploy_bare(client, "bare-limit", concurrency_limit=1),
            }
            if candidate:
                _point_at_checkout(client, CANDIDATE_JOB_ID, candidate)
            for kind in kinds:  # warm-up: first imports, first connections, bytecode cache
                _run(ctx, client, kind, deployment_ids, workers)
            rounds: list[dict[str, RunTiming]] = []
            for index in range(ctx.config.pairs):
                # The concurrency-limited bare flow runs every other round (for information).
                # The order rotates and reverses, so no kind always runs first or after another.
                this_round = kinds if index % 2 == 0 else kinds[:-1]
                shift = (index // 2) % len(this_round)
                order = this_round[shift:] + this_round[:shift]
                order = order[::-1] if index % 4 >= 2 else order
                rounds.append({kind: _run(ctx, client, kind, deployment_ids, workers)
                               for kind in order})
    finally:
        ctx.stack.stop(workers["cold"])
        ctx.stack.stop(workers["bare"])
    runs = {kind: [done[kind] for done in rounds if kind in done] for kind in kinds}
    failed = [t for kind in kinds for t in runs[kind]
              if (t.joblog_status if t.is_connecthub else t.final_type) not in ("SUCCESS",
                                                                               "COMPLETED")]

    def ratios(kind: str, base: str) -> Summary:
        return Summary.of(done[kind].total / done[base].total for done in rounds
                          if kind in done and base in done and done[kind].total
                          and done[base].total)

    totals = {kind: Summary.of(t.total for t in runs[kind]) for kind in kinds}
    warm_ratio = ratios("connecthub", "bare")
    section.add(
        "Run overhead: median of per-round ratios (trigger → JobLog SUCCESS) / "
        "(trigger → bare Completed)",
        warm_ratio.fmt("x", 3), f"≤ {TARGET_RATIO:.2f}",
        ok=warm_ratio.n >= 20 and warm_ratio.median <= TARGET_RATIO and not failed,
    )
    section.add("Old path (`cold`): median of per-round ratios cold / bare",
                ratios("cold", "bare").fmt("x", 3))
    section.add("Gain: median of per-round ratios warm / cold",
                ratios("connecthub", "cold").fmt("x", 3))
    section.add("ConnectHub no-op job, warm: trigger → JobLog SUCCESS",
                totals["connecthub"].fmt("s"))
    section.add("ConnectHub no-op job, cold: trigger → JobLog SUCCESS", totals["cold"].fmt("s"))
    section.add("Bare do-nothing flow on Prefect's own worker: trigger → Completed",
                totals["bare"].fmt("s"))
    section.add("Bare do-nothing flow with concurrency limit 1 (ConnectHub's default policy): "
                "trigger → Completed", totals["bare-limit"].fmt("s"))
    section.add("Same policy: median of per-round ratios warm / bare with concurrency limit 1",
                ratios("connecthub", "bare-limit").fmt("x", 3))
    section.add(
        "ConnectHub no-op job, warm: trigger → Prefect Completed",
        Summary.of(diff(t.trigger_start, t.final) for t in runs["connecthub"]).fmt("s"),
    )
    cpu = {kind: Summary.of(sum(t.cpu.values()) if t.cpu else None for t in runs[kind])
           for kind in kinds}
    section.add("CPU per run, one at a time (worker + run processes + Prefect server + "
                "PostgreSQL): warm / bare, ratio of medians",
                f"{fmt_number(cpu['connecthub'].median / cpu['bare'].median, 3)} x "
                f"({fmt_number(cpu['connecthub'].median, 2)} s / "
                f"{fmt_number(cpu['bare'].median, 2)} s; cold "
                f"{fmt_number(cpu['cold'].median, 2)} s)")
    if candidate:
        candidate_ratios = ratios("candidate", "cold")
        section.add(f"Candidate checkout `{candidate}`: median of per-round ratios to cold",
                    candidate_ratios.fmt("x", 3))
        section.add("Candidate checkout: trigger → JobLog SUCCESS", totals["candidate"].fmt("s"))
    section.add("Runs not successful", str(len(failed)), "0", ok=not failed)
    forked = sum(bool(t.forked) for t in runs["connecthub"])
    section.note(
        f"{len(rounds)} rounds, each a run of every kind (every other round adds a bare "
        "deployment with ConnectHub's default concurrency limit of 1, to show what that policy "
        "costs in Prefect), the order rotated and reversed, after one warm-up run of each; each "
        "run starts when every run process has exited. Workers: the product's `connecthub "
        f"worker` (pid {engine.worker.pid}; {forked} of {len(runs['connecthub'])} of its runs "
        "were forked from its fork server), the same with CONNECTHUB_WARM_START=false on pool "
        f"`{COLD_POOL}`, and `prefect worker start --pool {BARE_POOL} --type process` with the "
        f"same polling settings ({', '.join(f'{k}={v}' for k, v in polling_env().items())}), "
        "all without --limit; Prefect server on PostgreSQL. Flow-run heartbeats are on for "
        "every kind: ConnectHub's worker sets PREFECT_FLOWS_HEARTBEAT_FREQUENCY (30 s, for its "
        "heartbeat automation), Prefect's default is 180 s."
    )
    if candidate:
        section.note(
            f"`candidate` is the no-op job run from another checkout, `{candidate}`, on the "
            "cold worker (its deployment's pull step points there, so the run process imports "
            "that checkout's flow; a fork server holds this checkout's modules); the trigger, "
            "`run_now`, is this checkout's."
        )
    section.note(_breakdown(runs))
    section.note(_cpu(runs))
    section.note(_api_calls(runs))
    section.note(_microbenchmarks(ctx))
    return section


# --- one run ----------------------------------------------------------------------------


@contextmanager
def _pool(name: str) -> Iterator[None]:
    """ConnectHub's settings name work pool `name` meanwhile (so a sync puts jobs there)."""
    use_settings(None, CONNECTHUB_WORK_POOL=name)
    try:
        yield
    finally:
        os.environ.pop("CONNECTHUB_WORK_POOL")
        get_settings.cache_clear()


def _settle(workers: dict[str, Service]) -> None:
    """Wait until every run process is gone, so runs never overlap."""
    for worker in {worker.pid: worker for worker in workers.values()}.values():
        if not wait_idle(worker.pid, timeout=20):
            raise RuntimeError(f"flow processes still running: {run_processes(worker.pid)}")
    time.sleep(0.3)


def _point_at_checkout(client: Any, job_id: str, checkout: str) -> None:
    """Make `job_id`'s deployment run the flow from another checkout of ConnectHub."""
    from prefect.client.schemas.actions import DeploymentUpdate

    from connecthub.jobs.vocabulary import FLOW_NAME

    deployment = client.read_deployment_by_name(f"{FLOW_NAME}/{job_id}")
    steps = [{"prefect.deployments.steps.set_working_directory": {"directory": checkout}}]
    client.update_deployment(deployment.id, DeploymentUpdate(pull_steps=steps))


def _cpu_now(ctx: Context, worker: Service) -> dict[str, float]:
    own, runs = worker_tree_cpu(worker.pid)
    engine = ctx.engine()
    return {"worker": own, "run processes": runs, "Prefect server": tree_cpu(engine.server.pid),
            "PostgreSQL": engine.postgres.total()}


def _run(ctx: Context, client: Any, kind: str, deployment_ids: dict[str, Any],
         workers: dict[str, Service]) -> RunTiming:
    _settle(workers)
    before = _cpu_now(ctx, workers[kind])
    started = time.time()
    with count_api_calls() as calls:
        if kind in CONNECTHUB_KINDS:
            flow_run_id = str(run_now(JOBS[kind]).flow_run_id)
        else:
            flow_run_id = str(client.create_flow_run_from_deployment(deployment_ids[kind]).id)
    timing = RunTiming(flow_run_id, kind, started, time.time())
    timing.trigger_api_calls = calls.total
    runs = wait_final(client, [timing.flow_run_id], RUN_TIMEOUT, poll=0.2)
    wait_idle(workers[kind].pid, timeout=20)
    after = _cpu_now(ctx, workers[kind])
    timing.cpu = {part: after[part] - before[part] for part in CPU_PARTS}
    fill_from_prefect(client, timing, runs.get(timing.flow_run_id))
    fill_from_process(ctx.stack.process_log_dir, timing)
    if timing.is_connecthub:
        fill_from_joblog(timing)
    return timing


# --- breakdown --------------------------------------------------------------------------


def _phase(runs: list[RunTiming], start: str, end: str) -> Summary:
    return Summary.of(diff(getattr(t, start), getattr(t, end)) for t in runs)


def _cell(summary: Summary, digits: int = 3) -> str:
    return fmt_number(summary.median, digits) if summary.n else "—"


def _breakdown(runs: dict[str, list[RunTiming]]) -> str:
    # label, (start, end) for ConnectHub's kinds, (start, end) for the bare flows
    phases: list[tuple[str, tuple[str, str] | None, tuple[str, str] | None]] = [
        ("trigger call (this process → flow run created)", ("trigger_start", "created"),
         ("trigger_start", "created")),
        ("created → Pending (the worker's poll picks it up)", ("created", "pending"),
         ("created", "pending")),
        ("Pending → the worker has spawned the run's process", ("pending", "process_start"),
         ("pending", "process_start")),
        ("the run's process → engine start (ConnectHub: the launcher until the fork server "
         "forks the run process, warm, or until it execs a fresh engine, cold; bare: Prefect's "
         "workspace supervisor, imports, reads, pull step, until it execs the engine)",
         ("process_start", "engine_start"), ("process_start", "engine_start")),
        ("engine start → Running (cold and bare: imports; all: flow run read, pull step, flow "
         "load, proposing Running)", ("engine_start", "running"), ("engine_start", "running")),
        ("Running → body start (JobLog RUNNING written)", ("running", "body_start"), None),
        ("body start → JobLog SUCCESS (decrypt, plugin, JobLog writes)",
         ("body_start", "body_end"), None),
        ("Running → Completed (bare: the whole flow)", None, ("running", "final")),
        ("JobLog SUCCESS → Completed", ("body_end", "final"), None),
        ("Completed → the engine's main thread is done (the end of the engine, joining "
         "Prefect's heartbeat thread)",
         ("final", "engine_done"), ("final", "engine_done")),
        ("engine's main thread done → the run's process exits (atexit: Prefect's flush of "
         "events and logs; interpreter exit; warm: the launcher relays the exit)",
         ("engine_done", "process_exit"), ("engine_done", "process_exit")),
    ]
    rows = []
    differences: list[tuple[float, str]] = []
    for label, ch_span, bare_span in phases:
        row = [label]
        medians = {}
        for kind in runs:
            span = ch_span if kind in CONNECTHUB_KINDS else bare_span
            summary = _phase(runs[kind], *span) if span else Summary.of([])
            medians[kind] = summary.median if summary.n else None
            row.append(_cell(summary))
        ch, bare = medians["connecthub"], medians["bare"]
        row.append(fmt_number(ch - bare, 3) if ch is not None and bare is not None else "—")
        rows.append(row)
        if label.startswith(("Completed →", "engine's main thread")):
            continue  # after the measured end
        differences.append(((ch or 0.0) - (bare or 0.0), label))
    totals = {kind: Summary.of(t.total for t in runs[kind]) for kind in runs}
    rows.append(["**measured total** (trigger → JobLog SUCCESS / Completed)",
                 *(_cell(totals[kind]) for kind in runs),
                 fmt_number(totals["connecthub"].median - totals["bare"].median, 3)])
    exits = {kind: _phase(runs[kind], "trigger_start", "process_exit") for kind in runs}
    rows.append(["trigger → the run's process exits (the worker sees the run end)",
                 *(_cell(exits[kind]) for kind in runs),
                 fmt_number(exits["connecthub"].median - exits["bare"].median, 3)])
    cpu = {kind: Summary.of(t.flow_cpu for t in runs[kind]) for kind in runs}
    rows.append(["CPU seconds of the run's processes (bench/_hook: launcher + forked process, "
                 "or the one exec'd process)", *(_cell(cpu[kind]) for kind in runs),
                 fmt_number(cpu["connecthub"].median - cpu["bare"].median, 3)])
    peak = {kind: Summary.of((t.process_peak_kb or 0) / 1024 for t in runs[kind]
                             if t.process_peak_kb) for kind in runs}
    rows.append(["the run process's peak RSS, MiB (a forked process's counts the pages it "
                 "shares with the fork server; section 5 has its PSS)",
                 *(fmt_number(peak[k].median, 1) for k in runs),
                 fmt_number(peak["connecthub"].median - peak["bare"].median, 1)])
    largest = sorted(differences, key=lambda difference: -abs(difference[0]))[:3]
    reading = "The largest differences, warm - bare (medians): " + "; ".join(
        f"{label} {'+' if value >= 0 else ''}{fmt_number(value, 3)} s" for value, label in largest
    ) + "."
    return (
        "**Where the time goes** (median seconds per phase, from Prefect's state timestamps, "
        "the run processes' own start / fork / exec / exit times (bench/_hook) and JobLog's "
        "started_at / finished_at):\n\n"
        + table(["phase", *(LABELS[k] for k in runs), "warm - bare"], rows)
        + "\n\n" + reading
    )


def _cpu(runs: dict[str, list[RunTiming]]) -> str:
    rows = []
    for part in CPU_PARTS:
        rows.append([part, *(_cell(Summary.of(t.cpu.get(part) for t in runs[kind])) for kind in
                             runs)])
    totals = {kind: Summary.of(sum(t.cpu.values()) if t.cpu else None for t in runs[kind])
              for kind in runs}
    rows.append(["**total**", *(_cell(totals[kind]) for kind in runs)])
    return (
        "**CPU per run, one run at a time** (median CPU-seconds between the trigger and the "
        "exit of the run's processes, from /proc: the worker's own processes, the run's "
        "processes live or reaped, the Prefect server's process tree, and the PostgreSQL "
        "backends of this run's databases (sampled every 0.2 s); the server's and "
        "PostgreSQL's include what the idle workers' polls and this benchmark's own polling "
        "cost meanwhile, so a longer run is charged more of it):\n\n"
        + table(["", *(LABELS[k] for k in runs)], rows)
    )


def _api_calls(runs: dict[str, list[RunTiming]]) -> str:
    def counts(kind: str) -> list[str]:
        timings = runs[kind]
        return [
            fmt_number(Summary.of(t.trigger_api_calls for t in timings).median, 0),
            fmt_number(Summary.of(len(t.api_calls) for t in timings).median, 0),
            fmt_number(Summary.of(t.flow_api_writes for t in timings).median, 0),
            fmt_number(Summary.of(t.flow_api_seconds for t in timings).median, 3),
        ]

    endpoints = {kind: _endpoints(runs[kind]) for kind in runs}
    keys = sorted({key for found in endpoints.values() for key in found},
                  key=lambda k: -sum(found.get(k, 0) for found in endpoints.values()))
    rows = [[f"`{key}`", *(fmt_number(endpoints[kind].get(key, 0), 1) for kind in runs)]
            for key in keys]
    return (
        "**Prefect API calls per run** (median; the run process's calls are recorded by "
        "bench/_hook; events go over a websocket and are not counted):\n\n"
        + table(["", "trigger calls", "run-process calls", "of which writes",
                 "run-process seconds waiting on the API"],
                [[LABELS[kind], *counts(kind)] for kind in runs])
        + "\n\nRun-process calls by endpoint (mean per run):\n\n"
        + table(["endpoint", *(LABELS[k] for k in runs)], rows)
    )


def _endpoints(runs: list[RunTiming]) -> dict[str, float]:
    from bench.apicalls import normalise_path

    totals: dict[str, float] = {}
    for timing in runs:
        for call in timing.api_calls:
            key = f"{call[0]} {normalise_path(call[1])}"
            totals[key] = totals.get(key, 0) + 1
    return {key: value / max(len(runs), 1) for key, value in totals.items()}


# --- microbenchmarks --------------------------------------------------------------------

# What a run's process does, step by step, cold: a fresh interpreter each time, against the
# same database, in the order the generic flow does it.
COLD_PROBE = """
import json, time, uuid
marks = [time.perf_counter()]
import prefect.engine, prefect.flows
marks.append(time.perf_counter())
import {module}
marks.append(time.perf_counter())
if {connecthub}:
    from connecthub.db import joblog
    from connecthub.db.engine import session_scope
    from connecthub.db.models import Job
    from connecthub.jobs.vocabulary import RunStatus, Trigger
    with session_scope() as session:
        job = session.get(Job, {job_id!r})
    marks.append(time.perf_counter())
    flow_run_id = str(uuid.uuid4())
    joblog.record_running(flow_run_id, 1, job_id=job.id, trigger=Trigger.MANUAL,
                          retry_of=None, snapshot_params=job.public_cfg)
    marks.append(time.perf_counter())
    from connecthub.security.fernet import decrypt_json
    decrypt_json(job.secret_cfg, job_id=job.id)
    marks.append(time.perf_counter())
    from connecthub.plugins.manager import load_job_class
    load_job_class(job.handler_path)
    marks.append(time.perf_counter())
    joblog.record_final(flow_run_id, 1, RunStatus.SUCCESS, job_id=job.id)
    marks.append(time.perf_counter())
    # Not timed: remove the probe's row.
    from sqlalchemy import delete
    from connecthub.db.engine import session_scope
    from connecthub.db.models import JobLog
    with session_scope() as session:
        session.execute(delete(JobLog).where(JobLog.flow_run_id == flow_run_id))
print(json.dumps([b - a for a, b in zip(marks, marks[1:])]))
"""
COLD_STEPS = [
    "import prefect.engine + prefect.flows (every run pays it)",
    "import the flow module (flows.execute_job / bench.bare_flow)",
    "first DB session: import the driver, connect, read the Job",
    "write JobLog RUNNING",
    "decrypt secret_cfg",
    "load the plugin (`load_job_class`)",
    "write JobLog SUCCESS",
]


def _cold_probe(module: str, connecthub: bool, env: dict[str, str],
                repeat: int = 5) -> list[Summary]:
    code = COLD_PROBE.format(module=module, connecthub=connecthub, job_id=JOB_ID)
    samples: list[list[float]] = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True,
            text=True, check=True,
        ).stdout.strip().splitlines()[-1]
        for index, value in enumerate(json.loads(out)):
            if len(samples) <= index:
                samples.append([])
            samples[index].append(value)
    return [Summary.of(values) for values in samples]


def _microbenchmarks(ctx: Context) -> str:
    env = ctx.stack.child_env()
    connecthub = _cold_probe("flows.execute_job", True, env)
    bare = _cold_probe("bench.bare_flow", False, env)

    def ms(summaries: list[Summary], index: int) -> str:
        return summaries[index].fmt("ms", 1, scale=1000) if index < len(summaries) else "—"

    rows = [[step, ms(connecthub, i), ms(bare, i)] for i, step in enumerate(COLD_STEPS)]
    extra = sum(s.median for s in connecthub[1:]) - sum(s.median for s in bare[1:])
    return (
        "**Microbenchmarks: a run's process, cold** (what a `cold` run process does before and "
        "around the body; a forked one has the imports of the first two rows done by the fork "
        "server; a fresh interpreter per sample, 5 samples, the steps in the generic flow's "
        "order, against the same PostgreSQL; median (min-max)):\n\n"
        + table(["step", "ConnectHub", "bare"], rows)
        + f"\n\nConnectHub's own steps add {fmt_number(extra * 1000, 0)} ms (medians) to "
        "what the bare flow's process does."
    )
