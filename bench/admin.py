"""Benchmark 3: the admin's JobLog and Job pages at scale, on PostgreSQL, over real HTTP.

For each size in `--admin-rows` (1k, 100k, 1M) there is one database and one admin
(`connecthub.app.main:create_app` under a real uvicorn subprocess). Its JobLog is filled with a bulk
`INSERT ... SELECT generate_series` and then `VACUUM ANALYZE` (as autovacuum would have done on a
live database): rows spread over LOG_JOBS jobs, ids and timestamps increasing, 90 % SUCCESS,
5 % FAILED with an error and a traceback, the rest CANCELLED / CRASHED. Its Job table holds the
smallest of `--admin-jobs`, except the largest database, which holds the largest (10,000 jobs
next to 1M JobLog rows: the worst case). Pages, each asked `--admin-requests` times per size:

- JobLog list, first page: /admin/job-log/list
- JobLog list, deep page: the last page the list offers (the count is capped at 10,000 rows)
- JobLog list filtered by job: /admin/job-log/list?job_id=<one job>
- JobLog list filtered by job and status FAILED: an operator's usual question (extra)
- JobLog details: /admin/job-log/details/<id>, a different random id each time
- Job list: first page, last page, search by id

Requests go round-robin over pages and sizes, so noise from the machine falls on every size
alike and the large/small ratios hold on a busy machine.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from sqlalchemy import func, insert, select, text

from bench.context import Context
from bench.fixtures import SECRET
from bench.plugins import HANDLER_PATH
from bench.stack import admin_session, peak_rss_kb
from bench.stats import Section, Summary, fmt_number, table
from connecthub.db.engine import get_engine, session_scope
from connecthub.db.models import Job, JobLog, utcnow
from connecthub.security.fernet import encrypt_json

TITLE = "3. Admin at scale (PostgreSQL)"
TARGET_P50_MS = 50.0
TARGET_RATIO = 1.5
PAGE_SIZE = 10  # SQLAdmin's default
COUNT_CAP = 10_000  # JOBLOG_COUNT_CAP in connecthub.app.admin.views
LOG_JOBS = 100
WARMUP = 5
FILTERED_JOB = "bench.job-00007"

INSERT_LOGS = """
INSERT INTO job_log (job_id, status, trigger, flow_run_id, attempt, snapshot_params, result,
                     error, traceback, created_at, started_at, finished_at, duration_ms)
SELECT
  'bench.job-' || lpad((i % CAST(:jobs AS bigint))::text, 5, '0'),
  CASE WHEN i % 100 < 90 THEN 'SUCCESS' WHEN i % 100 < 95 THEN 'FAILED'
       WHEN i % 100 < 98 THEN 'CANCELLED' ELSE 'CRASHED' END,
  CASE WHEN i % 10 = 0 THEN 'manual' ELSE 'schedule' END,
  md5(i::text || :salt)::uuid::text,
  1,
  CAST('{"name": "bench", "batch": 500, "since": "2026-01-01"}' AS json),
  CASE WHEN i % 100 < 90 THEN CAST('{"rows": 500, "status": "ok"}' AS json) END,
  CASE WHEN i % 100 BETWEEN 90 AND 94 THEN 'RemoteError: HTTP 503 from upstream' END,
  CASE WHEN i % 100 BETWEEN 90 AND 94 THEN repeat('Traceback line of a failed job\n', 30) END,
  now() - ((CAST(:total AS bigint) - i) || ' seconds')::interval,
  now() - ((CAST(:total AS bigint) - i) || ' seconds')::interval,
  now() - ((CAST(:total AS bigint) - i) || ' seconds')::interval + interval '1.5 seconds',
  1500
FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS i
"""


def _grow_job_log(target: int) -> float:
    """Add rows until JobLog holds `target`; returns the seconds it took (with ANALYZE)."""
    started = time.perf_counter()
    with session_scope() as session:
        current = session.scalar(select(func.count()).select_from(JobLog)) or 0
    if target > current:
        with get_engine().begin() as conn:
            conn.execute(text(INSERT_LOGS), {
                "jobs": LOG_JOBS, "salt": str(target), "total": target,
                "first": current + 1, "last": target,
            })
    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE job_log"))
    return time.perf_counter() - started


def _grow_jobs(target: int) -> None:
    with session_scope() as session:
        current = session.scalar(select(func.count()).select_from(Job)) or 0
        if target <= current:
            return
        token = encrypt_json(SECRET)
        now = utcnow()
        rows = [
            {
                "id": f"bench.job-{index:05d}", "name": f"Bench job {index}",
                "description": "A job of the admin benchmark", "cron_expr": "*/5 * * * *",
                "timezone": "UTC", "handler_path": HANDLER_PATH, "public_cfg": {"batch": 500},
                "secret_cfg": token, "enabled": index % 7 != 0, "max_retries": 0,
                "retry_delay_seconds": 60, "concurrency_limit": 1,
                "collision_strategy": "ENQUEUE", "tags": ["bench"], "created_at": now,
                "updated_at": now, "deployment_id": None, "synced_at": None,
                "sync_error": None,
            }
            for index in range(current, target)
        ]
        for offset in range(0, len(rows), 2000):
            session.execute(insert(Job), rows[offset : offset + 2000])
    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE job"))


def _last_page(rows: int) -> int:
    return max(1, (min(rows, COUNT_CAP) + PAGE_SIZE - 1) // PAGE_SIZE)


@dataclass
class Instance:
    """One database at one size, with its own admin process and logged-in client."""

    rows: int
    jobs: int
    client: httpx.Client
    pid: int
    low_id: int
    high_id: int
    grow_seconds: float


def _instance(ctx: Context, rows: int, jobs: int) -> Instance:
    ctx.stack.use_connecthub(f"admin_{rows}", "http://127.0.0.1:9/api")  # no Prefect needed
    started = time.perf_counter()
    _grow_jobs(jobs)
    _grow_job_log(rows)
    grow_seconds = time.perf_counter() - started
    with session_scope() as session:
        low, high = session.execute(select(func.min(JobLog.id), func.max(JobLog.id))).one()
    admin = ctx.stack.admin(f"admin-{rows}")
    return Instance(rows, jobs, admin_session(admin.url), admin.pid, low or 0, high or 0,
                    grow_seconds)


def _pages(instance: Instance, rng: random.Random) -> dict[str, tuple[Callable[[], str], str]]:
    """Page label -> (path maker, text the page must contain)."""
    last_log_page = _last_page(instance.rows)
    last_job_page = max(1, (instance.jobs + PAGE_SIZE - 1) // PAGE_SIZE)
    return {
        "JobLog list, first page": (lambda: "/admin/job-log/list", "bench.job-"),
        "JobLog list, deep page (the last one offered)": (
            lambda: f"/admin/job-log/list?page={last_log_page}", "bench.job-"),
        "JobLog list filtered by job": (
            lambda: f"/admin/job-log/list?job_id={FILTERED_JOB}", FILTERED_JOB),
        "JobLog list filtered by job and status FAILED (extra)": (
            lambda: f"/admin/job-log/list?job_id={FILTERED_JOB}&status=FAILED", FILTERED_JOB),
        "JobLog details (random ids)": (
            lambda: f"/admin/job-log/details/{rng.randint(instance.low_id, instance.high_id)}",
            "bench.job-"),
        "Job list, first page": (lambda: "/admin/job/list", "bench.job-"),
        "Job list, last page": (lambda: f"/admin/job/list?page={last_job_page}", "bench.job-"),
        "Job list, search by id": (
            lambda: f"/admin/job/list?search=bench.job-{rng.randrange(instance.jobs):05d}",
            "bench.job-"),
    }


def run(ctx: Context) -> Section:
    section = Section("admin", TITLE)
    config = ctx.config
    sizes = sorted(config.admin_rows)
    small_jobs, large_jobs = min(config.admin_jobs), max(config.admin_jobs)
    small_jobs = max(small_jobs, LOG_JOBS)
    instances = [
        _instance(ctx, rows, large_jobs if rows == sizes[-1] else small_jobs) for rows in sizes
    ]
    rng = random.Random(6)
    pages = [_pages(instance, rng) for instance in instances]
    samples: dict[str, list[list[float]]] = {
        label: [[] for _ in instances] for label in pages[0]
    }
    # Interleaved: every round asks each page of each size once, so that the machine's noise
    # falls on every size alike and the ratios between sizes hold.
    for round_index in range(WARMUP + config.admin_requests):
        for label in samples:
            for index, instance in enumerate(instances):
                make_path, marker = pages[index][label]
                path = make_path()
                started = time.perf_counter()
                response = instance.client.get(path)
                elapsed = time.perf_counter() - started
                if response.status_code != 200 or marker not in response.text:
                    raise RuntimeError(f"GET {path} ({instance.rows:,} rows): HTTP "
                                       f"{response.status_code}, '{marker}' "
                                       f"{'missing' if marker not in response.text else 'found'}")
                if round_index >= WARMUP:
                    samples[label][index].append(elapsed)
    peaks = {instance.rows: peak_rss_kb(instance.pid) for instance in instances}
    for instance in instances:
        instance.client.close()

    summaries = {label: [Summary.of(values) for values in by_size]
                 for label, by_size in samples.items()}
    small, large = instances[0], instances[-1]
    for label, by_size in summaries.items():
        is_job_page = label.startswith("Job list")
        unit = f"{large.jobs:,} jobs" if is_job_page else f"{large.rows:,} JobLog rows"
        base = f"{small.jobs:,} jobs" if is_job_page else f"{small.rows:,} rows"
        big = by_size[-1]
        section.add(f"{label}: at {unit}", big.fmt_p("ms", 1, 1000),
                    f"p50 ≤ {TARGET_P50_MS:g} ms", ok=big.p50 * 1000 <= TARGET_P50_MS)
        if len(instances) > 1:
            ratio = big.p50 / by_size[0].p50
            section.add(f"{label}: p50 at {unit.split(' ', 1)[0]} / p50 at {base}",
                        f"{ratio:.2f}x", f"≤ {TARGET_RATIO}", ok=ratio <= TARGET_RATIO)
    section.add("Admin process peak RSS (VmHWM), largest database",
                f"{fmt_number((peaks[large.rows] or 0) / 1024, 0)} MiB")
    section.note(
        f"One real uvicorn admin process per size, each on its own database; one client per "
        f"admin, requests in sequence and interleaved across sizes and pages (round-robin, "
        f"{WARMUP} warm-up rounds, then {config.admin_requests} timed rounds), so machine noise "
        f"falls on every size alike. JobLog rows are spread over {LOG_JOBS} jobs (a filtered "
        f"job holds 1/{LOG_JOBS} of them). The largest database also holds {large_jobs:,} Jobs "
        f"(the others {small_jobs:,}). Filling each database (insert + VACUUM ANALYZE): "
        + ", ".join(f"{i.rows:,} rows / {i.jobs:,} jobs in {fmt_number(i.grow_seconds, 1)} s"
                    for i in instances) + "."
    )
    header = ["page", *(f"{i.rows:,} rows, {i.jobs:,} jobs" for i in instances)]
    rows = [[label, *(summary.fmt_p("ms", 1, 1000) for summary in by_size)]
            for label, by_size in summaries.items()]
    section.note(table(header, rows))
    return section
