"""Benchmark 1: what a ConnectHub run costs over a bare Prefect run, and where the time goes.

Pairs of runs, alternated pair by pair (and the order inside a pair alternated too, so that any
drift of the machine falls on both sides): a manual run of a no-op ConnectHub job
(`deployments.runs.run_now`, until its JobLog row is SUCCESS) and a run of a bare deployment of
a do-nothing flow (`create_flow_run_from_deployment`, until Completed), on the same Prefect
server, the same work pool (whose runs start `python -m prefect.engine` directly, as the
product's pool does) and the same `connecthub worker`. Each run starts once the previous flow
process has exited. The time of a run is taken from recorded timestamps (JobLog `finished_at`,
Prefect's Completed state), so the polling interval does not enter it.

The breakdown splits both kinds of run with Prefect's state history, the flow process's own
start/exit and API calls (bench/_hook) and JobLog's started_at / finished_at; in-process
microbenchmarks add the cost of ConnectHub's imports, plugin load, decryption and DB writes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
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
from bench.stack import REPO_ROOT, children, wait_no_children
from bench.stats import Section, Summary, fmt_number, table
from deployments.client import prefect_client
from deployments.runs import run_now

JOB_ID = "bench.noop"
RUN_TIMEOUT = 120
TARGET_RATIO = 1.10
TITLE = "1. Run overhead: ConnectHub vs a bare Prefect deployment"


LABELS = {
    "connecthub": "ConnectHub",
    "candidate": "candidate",
    "bare": "bare Prefect",
    "bare-limit": "bare + concurrency limit 1",
}
CANDIDATE_JOB_ID = "bench.noop-candidate"


def run(ctx: Context) -> Section:
    section = Section("overhead", TITLE)
    engine = ctx.engine()
    candidate = ctx.config.candidate
    save_noop_jobs([JOB_ID] + ([CANDIDATE_JOB_ID] if candidate else []))
    kinds = ["connecthub", "bare", *(["candidate"] if candidate else []), "bare-limit"]
    with prefect_client() as client:
        deployment_ids = {
            "bare": deploy_bare(client, "bare"),
            "bare-limit": deploy_bare(client, "bare-limit", concurrency_limit=1),
        }
        if candidate:
            _point_at_checkout(client, CANDIDATE_JOB_ID, candidate)
        for kind in kinds:  # warm-up: first imports, first connections
            _run(ctx, client, kind, deployment_ids)
        rounds: list[dict[str, RunTiming]] = []
        for index in range(ctx.config.pairs):
            # The concurrency-limited bare flow runs every other round (it is for information).
            # The order rotates and reverses, so no kind always runs first or after another.
            this_round = kinds if index % 2 == 0 else kinds[:-1]
            shift = (index // 2) % len(this_round)
            order = this_round[shift:] + this_round[:shift]
            order = order[::-1] if index % 4 >= 2 else order
            rounds.append({kind: _run(ctx, client, kind, deployment_ids) for kind in order})
    runs = {kind: [done[kind] for done in rounds if kind in done] for kind in kinds}
    failed = [t for kind in kinds for t in runs[kind]
              if (t.joblog_status if t.is_connecthub else t.final_type) not in ("SUCCESS",
                                                                               "COMPLETED")]

    ratios = Summary.of(
        done["connecthub"].total / done["bare"].total
        for done in rounds if done["connecthub"].total and done["bare"].total
    )
    totals = {kind: Summary.of(t.total for t in runs[kind]) for kind in kinds}
    section.add(
        "Run overhead: median of per-pair ratios (trigger → JobLog SUCCESS) / "
        "(trigger → bare Completed)",
        ratios.fmt("x", 3), f"≤ {TARGET_RATIO:.2f}",
        ok=ratios.n > 0 and ratios.median <= TARGET_RATIO and not failed,
    )
    section.add("ConnectHub no-op job: trigger → JobLog SUCCESS", totals["connecthub"].fmt("s"))
    section.add("Bare do-nothing flow: trigger → Completed", totals["bare"].fmt("s"))
    section.add("Bare do-nothing flow with concurrency limit 1 (ConnectHub's default policy): "
                "trigger → Completed", totals["bare-limit"].fmt("s"))
    section.add(
        "Same policy: median of per-round ratios ConnectHub / bare with concurrency limit 1",
        Summary.of(
            done["connecthub"].total / done["bare-limit"].total
            for done in rounds if "bare-limit" in done and done["bare-limit"].total
            and done["connecthub"].total
        ).fmt("x", 3),
    )
    section.add(
        "ConnectHub no-op job: trigger → Prefect Completed",
        Summary.of(diff(t.trigger_start, t.final) for t in runs["connecthub"]).fmt("s"),
    )
    section.add("Difference of medians (ConnectHub - bare)",
                f"{fmt_number(totals['connecthub'].median - totals['bare'].median, 2)} s")
    if candidate:
        candidate_ratios = Summary.of(
            done["candidate"].total / done["bare"].total
            for done in rounds if done["candidate"].total and done["bare"].total
        )
        section.add(f"Candidate checkout `{candidate}`: median of per-round ratios to bare",
                    candidate_ratios.fmt("x", 3), f"≤ {TARGET_RATIO:.2f}",
                    ok=candidate_ratios.n > 0 and candidate_ratios.median <= TARGET_RATIO)
        section.add("Candidate checkout: trigger → JobLog SUCCESS", totals["candidate"].fmt("s"))
    section.add("Runs not successful", str(len(failed)), "0", ok=not failed)
    section.note(
        f"{len(rounds)} rounds, each a pair of runs, ConnectHub and bare (every other round "
        "adds a third run, a bare deployment with ConnectHub's default concurrency limit of 1, "
        "to show what that policy costs in Prefect), the order rotated and reversed, "
        "after one warm-up run of each; each run starts when the previous flow process has "
        "exited. Worker `connecthub worker` with product defaults (poll 1 s, no --limit), "
        f"Prefect server on PostgreSQL, worker pid {engine.worker.pid}."
    )
    if candidate:
        section.note(
            f"`candidate` is the same no-op job run from another checkout, `{candidate}` (its "
            "deployment's pull step points there, so the flow process imports that checkout's "
            "code; the trigger, `run_now`, is this checkout's)."
        )
    section.note(_breakdown(runs))
    section.note(_api_calls(runs))
    section.note(_microbenchmarks())
    return section


# --- one run ----------------------------------------------------------------------------


def _settle(ctx: Context) -> None:
    """Wait until the previous flow process is gone, so runs never overlap."""
    worker = ctx.engine().worker
    if not wait_no_children(worker.pid, timeout=20):
        raise RuntimeError(f"flow processes still running: {children(worker.pid)}")
    time.sleep(0.3)


def _point_at_checkout(client: Any, job_id: str, checkout: str) -> None:
    """Make `job_id`'s deployment run the flow from another checkout of ConnectHub."""
    from prefect.client.schemas.actions import DeploymentUpdate

    from connecthub.jobs.vocabulary import FLOW_NAME

    deployment = client.read_deployment_by_name(f"{FLOW_NAME}/{job_id}")
    steps = [{"prefect.deployments.steps.set_working_directory": {"directory": checkout}}]
    client.update_deployment(deployment.id, DeploymentUpdate(pull_steps=steps))


def _run(ctx: Context, client: Any, kind: str, deployment_ids: dict[str, Any]) -> RunTiming:
    _settle(ctx)
    started = time.time()
    with count_api_calls() as calls:
        if kind in ("connecthub", "candidate"):
            job_id = JOB_ID if kind == "connecthub" else CANDIDATE_JOB_ID
            flow_run_id = str(run_now(job_id).flow_run_id)
        else:
            flow_run_id = str(client.create_flow_run_from_deployment(deployment_ids[kind]).id)
    timing = RunTiming(flow_run_id, kind, started, time.time())
    timing.trigger_api_calls = calls.total
    return _finish(ctx, client, timing)


def _finish(ctx: Context, client: Any, timing: RunTiming) -> RunTiming:
    runs = wait_final(client, [timing.flow_run_id], RUN_TIMEOUT, poll=0.2)
    flow_run = runs.get(timing.flow_run_id)
    wait_no_children(ctx.engine().worker.pid, timeout=20)
    fill_from_prefect(client, timing, flow_run)
    fill_from_process(ctx.stack.process_log_dir, timing)
    if timing.is_connecthub:
        fill_from_joblog(timing)
    return timing


# --- breakdown --------------------------------------------------------------------------


def _phase(runs: list[RunTiming], start: str, end: str) -> Summary:
    return Summary.of(diff(getattr(t, start), getattr(t, end)) for t in runs)


def _breakdown(runs: dict[str, list[RunTiming]]) -> str:
    def cell(summary: Summary) -> str:
        return fmt_number(summary.median, 3) if summary.n else "—"

    # label, (start, end) for ConnectHub, (start, end) for the bare flows
    phases: list[tuple[str, tuple[str, str] | None, tuple[str, str] | None]] = [
        ("trigger call (this process → flow run created)", ("trigger_start", "created"),
         ("trigger_start", "created")),
        ("created → Pending (the worker's poll picks it up)", ("created", "pending"),
         ("created", "pending")),
        ("Pending → the worker has spawned the run's process", ("pending", "process_start"),
         ("pending", "process_start")),
        ("Prefect's workspace supervisor, if the pool has no command "
         "(imports, reads, pull step, exec)",
         ("process_start", "engine_start"), ("process_start", "engine_start")),
        ("`python -m prefect.engine` start → Running (imports, flow load)",
         ("engine_start", "running"), ("engine_start", "running")),
        ("Running → body start (JobLog RUNNING written)", ("running", "body_start"), None),
        ("body start → JobLog SUCCESS (decrypt, plugin, JobLog writes)",
         ("body_start", "body_end"), None),
        ("Running → Completed (bare: the whole flow)", None, ("running", "final")),
        ("JobLog SUCCESS → Completed", ("body_end", "final"), None),
        ("Completed → flow process exit", ("final", "process_exit"), ("final", "process_exit")),
    ]
    rows = []
    differences: list[tuple[float, str]] = []
    for label, ch_span, bare_span in phases:
        row = [label]
        medians = {}
        for kind in runs:
            span = ch_span if kind in ("connecthub", "candidate") else bare_span
            summary = _phase(runs[kind], *span) if span else Summary.of([])
            medians[kind] = summary.median if summary.n else None
            row.append(cell(summary))
        ch, bare = medians["connecthub"], medians["bare"]
        row.append(fmt_number(ch - bare, 3) if ch is not None and bare is not None else "—")
        rows.append(row)
        if label.startswith("Completed →"):
            continue  # after the measured end
        if ch is not None:
            differences.append((ch - (bare or 0.0), label))
    totals = {kind: Summary.of(t.total for t in runs[kind]) for kind in runs}
    rows.append(["**measured total** (trigger → JobLog SUCCESS / Completed)",
                 *(cell(totals[kind]) for kind in runs),
                 fmt_number(totals["connecthub"].median - totals["bare"].median, 3)])
    cpu = {kind: Summary.of(t.flow_cpu for t in runs[kind]) for kind in runs}
    rows.append(["CPU seconds of the run's process",
                 *(cell(cpu[kind]) for kind in runs),
                 fmt_number(cpu["connecthub"].median - cpu["bare"].median, 3)])
    peak = {kind: Summary.of((t.process_peak_kb or 0) / 1024 for t in runs[kind]
                             if t.process_peak_kb) for kind in runs}
    rows.append(["flow process peak RSS (MiB)", *(fmt_number(peak[k].median, 1) for k in runs),
                 fmt_number(peak["connecthub"].median - peak["bare"].median, 1)])
    largest = sorted(differences, reverse=True)[:3]
    reading = "ConnectHub's largest extra phases (median, against the bare flow): " + "; ".join(
        f"{label} {'+' if value >= 0 else ''}{fmt_number(value, 3)} s" for value, label in largest
    ) + "."
    return (
        "**Where the time goes** (median seconds per phase, from Prefect's state timestamps, "
        "the run process's own start / exec / exit times (bench/_hook) and JobLog's "
        "started_at / finished_at):\n\n"
        + table(["phase", *(LABELS[k] for k in runs), "ConnectHub - bare"], rows)
        + "\n\n" + reading
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


def _cold_probe(module: str, connecthub: bool, repeat: int = 5) -> list[Summary]:
    code = COLD_PROBE.format(module=module, connecthub=connecthub, job_id=JOB_ID)
    samples: list[list[float]] = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
            check=True,
        ).stdout.strip().splitlines()[-1]
        for index, value in enumerate(json.loads(out)):
            if len(samples) <= index:
                samples.append([])
            samples[index].append(value)
    return [Summary.of(values) for values in samples]


def _microbenchmarks() -> str:
    connecthub = _cold_probe("flows.execute_job", True)
    bare = _cold_probe("bench.bare_flow", False)

    def ms(summaries: list[Summary], index: int) -> str:
        return summaries[index].fmt("ms", 1, scale=1000) if index < len(summaries) else "—"

    rows = [[step, ms(connecthub, i), ms(bare, i)] for i, step in enumerate(COLD_STEPS)]
    extra = sum(s.median for s in connecthub[1:]) - sum(s.median for s in bare[1:])
    return (
        "**Microbenchmarks: a run's process, cold** (a fresh interpreter per sample, 5 "
        "samples, the steps in the generic flow's order, against the same PostgreSQL; "
        "median (min-max)):\n\n"
        + table(["step", "ConnectHub", "bare"], rows)
        + f"\n\nConnectHub's own steps add {fmt_number(extra * 1000, 0)} ms (medians) to "
        "what the bare flow's process does."
    )
