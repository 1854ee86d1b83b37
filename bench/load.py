"""Load test: many jobs on `* * * * *` for minutes, on PostgreSQL or in the embedded mode.

    python -m bench.load [--jobs 40] [--minutes 10] [--workers 2] [--ceiling auto]
    python -m bench.load --embedded [--jobs 40] [--minutes 10]

Starts its own stack (bench/stack.py): a Prefect server on a fresh PostgreSQL database, a fresh
ConnectHub database, `--workers` `connecthub worker` processes (product defaults), the product's
sync/reconcile loop (`connecthub sync --loop`) and the admin under a real uvicorn. With
`--embedded` it starts `connecthub up` as shipped instead, on a fresh data directory (SQLite for
ConnectHub and for the Prefect server it starts, one worker, its sync loop and admin), and also
counts the 503 answers and "database is locked" errors in every log of the data directory.
Then:

1. Ceiling (`--ceiling auto`): every slot of `* * * * *` fires all jobs in the same second, so
   the machine keeps up when one burst of `--jobs` runs finishes within the minute. A probe
   fires that burst by hand (no-op jobs, run now) and times it: ceiling = jobs x 60 / burst
   seconds, in runs per minute. When the ceiling is below `--jobs`, the load uses 80 % of it
   (rounded down) and the report says so. `--ceiling N` takes a ceiling measured elsewhere;
   `--ceiling off` runs `--jobs` whatever happens.
2. Load: that many no-op jobs (with an encrypted secret, like any job) on `* * * * *`, saved and
   synced as the product does. The window is `--minutes` whole slots, starting at the first
   minute at least LEAD_SECONDS after the jobs are synced (so every slot of the window was
   scheduled in advance). Meanwhile the admin's JobLog list (/admin/job-log/list, logged in) is
   requested every `--admin-every` seconds, until every run of the window is final.
3. Checks, per (job, slot) of the window: exactly one Prefect flow run and exactly one JobLog
   row with trigger `schedule` (no loss, no duplicate); every JobLog row SUCCESS; JobLog's
   status agrees with Prefect's final state for every run; admin list p95 < 200 ms.

Prints a Markdown table of the figures (also written to <run-dir>/load.md and `--output`);
exits 1 when a check fails. Everything it starts is stopped and its databases are dropped.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import FlowRun
from sqlalchemy import func, select

from bench.fixtures import read_all_flow_runs, save_noop_jobs
from bench.stack import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    REPO_ROOT,
    Service,
    Stack,
    admin_session,
    runs_in_flight,
)
from bench.stats import Summary, fmt_number, table
from connecthub.db import crud
from connecthub.db.engine import session_scope
from connecthub.db.models import Job, JobLog
from connecthub.jobs.vocabulary import RunStatus
from deployments.client import prefect_client
from deployments.reconcile import FINAL_STATUS, RESUBMIT_TAG_PREFIX, Reconciler, never_started
from deployments.runs import run_now
from deployments.sync import sync_job
from tests.support.processes import free_port, stop_process
from tests.support.settings import use_settings

LEAD_SECONDS = 30
ADMIN_TARGET_P95_MS = 200.0
CEILING_SHARE = 0.8
PROBE_TIMEOUT = 600
DRAIN_TIMEOUT = 900
ADMIN_LIST = "/admin/job-log/list"
LATENESS_TARGET_P95_S = 5.0


def log(message: str) -> None:
    print(f"[load {datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


@dataclass
class Row:
    figure: str
    measured: str
    target: str = ""
    ok: bool | None = None

    @property
    def verdict(self) -> str:
        return "info" if self.ok is None else ("pass" if self.ok else "**FAIL**")


@dataclass
class Sampler:
    """Samples, on demand, the admin's JobLog list latency, runs in flight and load average."""

    client: httpx.Client
    workers: list[Service]
    every: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    peak_flow_processes: int = 0
    peak_load: float = 0.0
    _next: float = 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        self.peak_flow_processes = max(
            self.peak_flow_processes, sum(len(runs_in_flight(w.pid)) for w in self.workers)
        )
        self.peak_load = max(self.peak_load, os.getloadavg()[0])
        if now < self._next:
            return
        self._next = now + self.every
        began = time.perf_counter()
        try:
            response = self.client.get(ADMIN_LIST)
            elapsed = (time.perf_counter() - began) * 1000
            if response.status_code != 200:
                self.errors.append(f"HTTP {response.status_code}")
            else:
                self.latencies_ms.append(elapsed)
        except httpx.HTTPError as error:
            self.errors.append(type(error).__name__)


def sleep_until(moment: datetime, tick: Callable[[], None]) -> None:
    while (left := (moment - datetime.now(UTC)).total_seconds()) > 0:
        tick()
        time.sleep(min(left, 0.5))


def next_slot(after: datetime) -> datetime:
    return after.replace(second=0, microsecond=0) + timedelta(minutes=1)


# --- the ceiling probe --------------------------------------------------------------------


@dataclass
class Probe:
    runs: int
    seconds: float
    succeeded: int

    @property
    def per_minute(self) -> float:
        return self.runs * 60 / self.seconds


def probe_ceiling(runs: int, tick: Callable[[], None]) -> Probe:
    """Fire `runs` no-op runs at once and time the burst until every JobLog is final."""
    job_ids = [f"probe.{index:03d}" for index in range(runs)]
    save_noop_jobs(job_ids)
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        log_ids = [row.id for row in pool.map(run_now, job_ids)]
    deadline = began + PROBE_TIMEOUT
    statuses: dict[int, str] = {}
    while time.monotonic() < deadline:
        tick()
        with session_scope() as session:
            statuses = {
                row.id: row.status
                for row in session.scalars(select(JobLog).where(JobLog.id.in_(log_ids)))
            }
        if len(statuses) == runs and all(RunStatus(s).is_final for s in statuses.values()):
            break
        time.sleep(0.5)
    seconds = time.monotonic() - began
    for job_id in job_ids:  # their deployments go too, so the load starts on a clean engine
        with session_scope() as session:
            crud.delete_job(session, job_id)
        sync_job(job_id)
    succeeded = sum(status == RunStatus.SUCCESS.value for status in statuses.values())
    return Probe(runs, seconds, succeeded)


# --- the load -----------------------------------------------------------------------------


@dataclass
class Window:
    job_ids: list[str]
    deployments: dict[str, str]  # deployment id -> job id
    slots: list[datetime]

    @property
    def first(self) -> datetime:
        return self.slots[0]

    @property
    def last(self) -> datetime:
        return self.slots[-1]


def slot_of(run: FlowRun) -> datetime:
    expected = datetime.fromtimestamp(run.expected_start_time.timestamp(), UTC)
    return expected.replace(second=0, microsecond=0)


def window_runs(client: SyncPrefectClient, window: Window) -> list[FlowRun]:
    return read_all_flow_runs(
        client,
        deployment_filter=DeploymentFilter(
            id=DeploymentFilterId(any_=[UUID(d) for d in window.deployments])
        ),
        flow_run_filter=FlowRunFilter(expected_start_time=FlowRunFilterExpectedStartTime(
            after_=window.first - timedelta(seconds=1),
            before_=window.last + timedelta(seconds=1),
        )),
    )


def drain(client: SyncPrefectClient, window: Window, tick: Callable[[], None]) -> list[FlowRun]:
    """Wait until every (job, slot) of the window has a run and every run is final."""
    expected = len(window.job_ids) * len(window.slots)
    deadline = time.monotonic() + DRAIN_TIMEOUT
    last_report = 0.0
    while True:
        runs = window_runs(client, window)
        final = [run for run in runs if run.state is not None and run.state.is_final()]
        complete = len({(r.deployment_id, slot_of(r)) for r in runs}) >= expected
        # A slot that never got a run is not waited for long: that is a loss to report.
        give_up = datetime.now(UTC) > window.last + timedelta(minutes=2)
        if len(final) == len(runs) and (complete or give_up):
            return runs
        if time.monotonic() > deadline:
            log(f"drain timed out: {len(final)} of {len(runs)} runs final")
            return runs
        if time.monotonic() - last_report > 30:
            last_report = time.monotonic()
            log(f"draining: {len(final)} of {expected} window runs final")
        for _ in range(6):
            tick()
            time.sleep(0.5)


def read_runs_by_id(client: SyncPrefectClient, ids: list[str]) -> list[FlowRun]:
    found: list[FlowRun] = []
    for start in range(0, len(ids), 200):
        chunk = [UUID(i) for i in ids[start : start + 200]]
        found += client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=len(chunk)
        )
    return found


def analyse(client: SyncPrefectClient, window: Window, runs: list[FlowRun]) -> dict[str, Any]:
    expected = {(job_id, slot) for job_id in window.job_ids for slot in window.slots}
    by_id = {str(run.id): run for run in runs}
    # A run the worker could not submit never ran; ConnectHub started it again as a new flow run
    # tagged with the original's id, which counts for the original's slot.
    resubmitted = {
        tag.removeprefix(RESUBMIT_TAG_PREFIX): run for run in runs for tag in run.tags or ()
        if tag.startswith(RESUBMIT_TAG_PREFIX)
    }

    def slot_key(run: FlowRun) -> tuple[str, datetime]:
        original = next((by_id[key] for key, again in resubmitted.items()
                         if again.id == run.id and key in by_id), run)
        return window.deployments[str(run.deployment_id)], slot_of(original)

    never_ran = {str(run.id) for run in runs
                 if never_started(run) and str(run.id) in resubmitted}
    runs_per_slot: dict[tuple[str, datetime], list[FlowRun]] = defaultdict(list)
    for run in runs:
        if str(run.id) not in never_ran:
            runs_per_slot[slot_key(run)].append(run)
    with session_scope() as session:
        rows = list(session.scalars(select(JobLog).where(
            JobLog.job_id.in_(window.job_ids), JobLog.trigger == "schedule"
        )))
        session.expunge_all()
    run_by_id = {str(run.id): run for run in runs}
    unknown = [row.flow_run_id for row in rows if row.flow_run_id not in run_by_id]
    run_by_id.update({str(run.id): run for run in read_runs_by_id(client, unknown)})
    rows_per_slot: dict[tuple[str, datetime], list[JobLog]] = defaultdict(list)
    for row in rows:
        run = run_by_id.get(row.flow_run_id)
        if run is not None and row.flow_run_id not in never_ran:
            rows_per_slot[slot_key(run)].append(row)

    found: dict[str, Any] = {
        "expected": len(expected),
        "prefect_missing": sum(1 for key in expected if not runs_per_slot.get(key)),
        "prefect_duplicates": sum(max(0, len(runs_per_slot.get(key, [])) - 1) for key in expected),
        "joblog_missing": sum(1 for key in expected if not rows_per_slot.get(key)),
        "joblog_duplicates": sum(max(0, len(rows_per_slot.get(key, [])) - 1) for key in expected),
        "success": 0, "not_final": 0, "disagree": [], "lateness": [], "prefect_lateness": [],
        "states": Counter(), "never_started": len(never_ran),
    }
    for key in expected:
        for row in rows_per_slot.get(key, []):
            run = run_by_id[row.flow_run_id]
            found["states"][f"{row.status}/{run.state_type.value if run.state_type else '?'}"] += 1
            found["success"] += row.status == RunStatus.SUCCESS.value
            found["not_final"] += not RunStatus(row.status).is_final
            wanted = FINAL_STATUS.get(run.state_type) if run.state_type else None
            if wanted is None or wanted.value != row.status:
                found["disagree"].append(f"{row.job_id}@{key[1]:%H:%M} JobLog {row.status} "
                                         f"vs Prefect {run.state_type}")
            if row.started_at is not None:
                found["lateness"].append((row.started_at - key[1]).total_seconds())
            if run.start_time is not None:
                found["prefect_lateness"].append((run.start_time - key[1]).total_seconds())
    ends = [run.end_time for run in runs if run.end_time is not None]
    found["last_end_after_last_slot"] = (max(ends) - window.last).total_seconds() if ends else None
    return found


def start_sync_loop(stack: Stack, exits: ExitStack) -> subprocess.Popen[bytes]:
    log_path = stack.run_dir / "sync-loop.log"
    with open(log_path, "wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "connecthub.app.cli", "sync", "--loop"], env=stack.child_env(),
            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO_ROOT,
        )
    exits.callback(stop_process, process)
    return process


def start_embedded(stack: Stack, exits: ExitStack) -> tuple[Service, str]:
    """`connecthub up` as shipped on a fresh data directory; this process uses its database and
    Prefect server. Returns the `up` service and the admin's URL."""
    data_dir = stack.run_dir / "embedded"
    port, prefect_port = free_port(), free_port()
    env = {key: value for key, value in stack.child_env().items()
           if key not in ("DB_URL", "FERNET_KEY_PATH", "PREFECT_API_URL", "PREFECT_HOME")}
    env.update(DATA_DIR=str(data_dir), ADMIN_USERNAME=ADMIN_USERNAME,
               ADMIN_PASSWORD=ADMIN_PASSWORD)
    log_path = stack.run_dir / "up.log"
    with open(log_path, "wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "connecthub.app.cli", "up", "--port", str(port),
             "--prefect-port", str(prefect_port)],
            env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=REPO_ROOT,
        )
    exits.callback(stop_process, process)
    deadline = time.monotonic() + 240
    while b"ConnectHub is up." not in log_path.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"connecthub up did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)
    use_settings(None, DATA_DIR=str(data_dir), DB_URL=f"sqlite:///{data_dir / 'connecthub.db'}",
                 FERNET_KEY_PATH=str(data_dir / "fernet.key"),
                 PREFECT_API_URL=f"http://127.0.0.1:{prefect_port}/api")
    return Service("up", process, log_path), f"http://127.0.0.1:{port}"


def embedded_log_errors(data_dir: Path) -> Counter[str]:
    """503 answers and SQLite lock errors, per log file of the embedded mode."""
    found: Counter[str] = Counter()
    for path in sorted((data_dir / "logs").glob("*.log")):
        text = path.read_text(errors="replace")
        for needle in ("503 Service Unavailable", "database is locked"):
            if count := text.count(needle):
                found[f"{path.name}: {needle}"] += count
    return found


def run(args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    notes: list[str] = []
    with Stack(args.run_dir) as stack, ExitStack() as exits:
        log(f"starting the stack in {args.run_dir}")
        if args.embedded:
            up, admin_url = start_embedded(stack, exits)
            workers, sync_loop = [up], None
        else:
            server = stack.prefect_server("load")
            stack.use_connecthub("load", server.url)
            stack.work_pool()
            workers = [stack.worker(f"w{index}", limit=args.worker_limit)
                       for index in range(args.workers)]
            sync_loop = start_sync_loop(stack, exits)
            admin_url = stack.admin().url
        client = admin_session(admin_url)
        exits.callback(client.close)
        sampler = Sampler(client, workers, args.admin_every)
        tick = sampler  # idle moments sample the admin and the processes

        jobs = args.jobs
        if args.ceiling == "auto":
            log(f"probe: a burst of {args.jobs} runs ...")
            probe = probe_ceiling(args.jobs, tick)
            ceiling = probe.per_minute
            rows.append(Row(
                "Ceiling probe: one burst of runs (run now, no-op job) with "
                f"{args.workers} workers",
                f"{probe.runs} runs ({probe.succeeded} SUCCESS) in {probe.seconds:.1f} s "
                f"= {ceiling:.1f} runs/min", "", None))
        elif args.ceiling != "off":
            ceiling = float(args.ceiling)
        else:
            ceiling = float("inf")
        if ceiling < args.jobs:
            jobs = max(1, int(ceiling * CEILING_SHARE))
            decision = (f"{jobs} jobs: 80 % of the measured ceiling ({ceiling:.1f} runs/min), "
                        f"below the {args.jobs} asked")
        else:
            decision = f"{jobs} jobs as asked (ceiling {ceiling:.1f} runs/min)" \
                if ceiling != float("inf") else f"{jobs} jobs as asked (no ceiling check)"
        log(f"load: {decision}")
        rows.append(Row("Jobs on `* * * * *`", decision, f"{args.jobs}, or 80 % of the ceiling"))
        sampler.latencies_ms.clear()
        sampler.errors.clear()

        job_ids = [f"load.{index:03d}" for index in range(jobs)]
        began = time.monotonic()
        save_noop_jobs(job_ids, cron="* * * * *")
        log(f"saved and synced {jobs} jobs in {time.monotonic() - began:.1f} s")
        with session_scope() as session:
            deployments = {
                str(session.get(Job, job_id).deployment_id): job_id  # type: ignore[union-attr]
                for job_id in job_ids
            }
        first = next_slot(datetime.now(UTC) + timedelta(seconds=LEAD_SECONDS))
        window = Window(job_ids, deployments,
                        [first + timedelta(minutes=i) for i in range(args.minutes)])
        log(f"window: {len(window.slots)} slots {window.first:%H:%M}-{window.last:%H:%M} UTC")
        sleep_until(window.first, tick)
        sampler.latencies_ms.clear()  # from here on, the admin is measured under the load
        sampler.errors.clear()
        sampler.peak_flow_processes = 0
        sampler.peak_load = 0.0
        for slot in window.slots[1:]:
            sleep_until(slot, tick)
            with session_scope() as session:
                done = session.scalar(select(func.count()).select_from(JobLog).where(
                    JobLog.job_id.in_(job_ids), JobLog.status == RunStatus.SUCCESS.value
                ))
            log(f"slot {slot:%H:%M}: {done} scheduled runs SUCCESS so far; admin p95 "
                f"{fmt_number(Summary.of(sampler.latencies_ms).p95, 0)} ms")
        with prefect_client() as prefect:
            runs = drain(prefect, window, tick)
            log("window drained; stopping the sync loop and pausing the jobs")
            if sync_loop is not None:
                stop_process(sync_loop)
            for deployment_id in deployments:
                prefect.pause_deployment(UUID(deployment_id))
            Reconciler().run_once()
            runs = window_runs(prefect, window)
            found = analyse(prefect, window, runs)
        log_errors = embedded_log_errors(stack.run_dir / "embedded") if args.embedded else None

    expected = found["expected"]
    lateness = Summary.of(found["prefect_lateness"])
    setup = ("`connecthub up` (embedded: SQLite, one worker)" if args.embedded
             else f"{args.workers} workers"
             + (f" (--limit {args.worker_limit})" if args.worker_limit else ""))
    rows += [
        Row("Window", f"{len(window.slots)} slots ({window.first:%H:%M}-{window.last:%H:%M} UTC) "
            f"x {jobs} jobs = {expected} expected runs, {setup}", ""),
        Row("Prefect flow runs per (job, slot): missing / duplicate",
            f"{found['prefect_missing']} / {found['prefect_duplicates']}", "0 / 0",
            found["prefect_missing"] == 0 and found["prefect_duplicates"] == 0),
        Row("JobLog rows (trigger schedule) per (job, slot): missing / duplicate",
            f"{found['joblog_missing']} / {found['joblog_duplicates']}", "0 / 0",
            found["joblog_missing"] == 0 and found["joblog_duplicates"] == 0),
        Row("JobLog SUCCESS", f"{found['success']} of {expected}", f"{expected}",
            found["success"] == expected),
        Row("Runs the worker could not submit (never started), started again by ConnectHub",
            f"{found['never_started']}", ""),
        Row("JobLog agrees with Prefect's final state",
            f"{len(found['disagree'])} disagreement(s), {found['not_final']} not final",
            "0, 0", not found["disagree"] and found["not_final"] == 0),
        Row("Start lateness, body start (JobLog started_at) - slot",
            Summary.of(found["lateness"]).fmt_p("s"), ""),
        Row("Start lateness, Prefect Running - slot", lateness.fmt_p("s"),
            f"p95 <= {LATENESS_TARGET_P95_S:g} s", lateness.p95 <= LATENESS_TARGET_P95_S),
        Row("Last run of the window ended, after its slot",
            f"{fmt_number(found['last_end_after_last_slot'], 1)} s", ""),
        Row(f"Admin JobLog list ({ADMIN_LIST}) while the load runs",
            Summary.of(sampler.latencies_ms).fmt_p("ms", 0)
            + f", {len(sampler.errors)} error(s)",
            f"p95 < {ADMIN_TARGET_P95_MS:.0f} ms, 0 errors",
            bool(sampler.latencies_ms) and not sampler.errors
            and Summary.of(sampler.latencies_ms).p95 < ADMIN_TARGET_P95_MS),
        Row("Peak runs in flight under the workers / peak load average (1 min)",
            f"{sampler.peak_flow_processes} / {sampler.peak_load:.1f} on {os.cpu_count()} CPUs",
            ""),
    ]
    if log_errors is not None:
        rows.append(Row("503 answers / 'database is locked' in the embedded mode's logs",
                        f"{sum(log_errors.values())}", "0", not log_errors))
        notes += [f"{where}: {count}" for where, count in sorted(log_errors.items())]
    notes.append("JobLog/Prefect outcomes: " + ", ".join(
        f"{key} {count}" for key, count in sorted(found["states"].items())))
    notes += [f"disagreement: {item}" for item in found["disagree"][:20]]
    if sampler.errors:
        notes.append(f"admin errors: {Counter(sampler.errors)}")
    return rows, notes


def load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def render(rows: list[Row], notes: list[str], command: str, started: datetime,
           load_at_start: str) -> str:
    lines = [
        f"Load test: `{command}`, {started:%Y-%m-%d %H:%M} UTC, "
        f"{(datetime.now(UTC) - started).total_seconds() / 60:.1f} min; load average "
        f"(1/5/15 min) {load_at_start} at start, {load_average()} at end.",
        "",
        table(["figure", "measured", "target", ""],
              [[r.figure, r.measured, r.target or "—", r.verdict] for r in rows]),
    ]
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=40, help="jobs on '* * * * *'")
    parser.add_argument("--minutes", type=int, default=10, help="slots in the window")
    parser.add_argument("--workers", type=int, default=2, help="connecthub worker processes")
    parser.add_argument("--embedded", action="store_true",
                        help="run `connecthub up` as shipped (SQLite) instead of the stack")
    parser.add_argument("--worker-limit", type=int, default=None,
                        help="--limit of each worker (default: none, as the product)")
    parser.add_argument("--ceiling", default="auto",
                        help="'auto' (probe it), 'off', or runs per minute measured elsewhere")
    parser.add_argument("--admin-every", type=float, default=3.0,
                        help="seconds between two admin list requests")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="logs (default: a new directory under /tmp)")
    parser.add_argument("--output", type=Path, default=None,
                        help="also write the Markdown report there")
    args = parser.parse_args(argv)
    if args.ceiling not in ("auto", "off"):
        try:
            float(args.ceiling)
        except ValueError:
            parser.error("--ceiling is 'auto', 'off' or a number of runs per minute")
    if min(args.jobs, args.minutes, args.workers) < 1:
        parser.error("--jobs, --minutes and --workers must be at least 1")
    args.run_dir = args.run_dir or Path(
        f"/tmp/connecthub-load-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    )
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "bench.load", *argv])
    started, load_at_start = datetime.now(UTC), load_average()
    rows, notes = run(args)
    text = render(rows, notes, command, started, load_at_start)
    print(text)
    (args.run_dir / "load.md").write_text(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    return 1 if any(row.ok is False for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
