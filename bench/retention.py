"""Benchmark: pruning JobLog past retention at scale, and the admin's JobLog list meanwhile.

Run it with `.venv/bin/python -m bench.retention --rows 1000000` (PostgreSQL at
CONNECTHUB_TEST_PG, as for the other benchmarks). It fills JobLog with `--rows` rows older than
JOBLOG_RETENTION_DAYS plus `--kept` recent ones (the same bulk insert as the admin benchmark),
starts a real admin (uvicorn subprocess), measures the JobLog list's latency idle, then runs
`connecthub.db.retention.prune` (the loop's batched delete) in a thread while asking for the
list again and again, and prints: rows pruned, seconds, rows/s, and the list's p50/p95 idle and
during the prune. The figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, select, text, update

from bench.admin import INSERT_LOGS, LOG_JOBS
from bench.stack import Stack, admin_session
from bench.stats import Summary
from connecthub.db.engine import get_engine, session_scope
from connecthub.db.models import JobLog, utcnow
from connecthub.db.retention import prune
from tests.support.processes import start_admin, stop_process

LIST_PAGE = "/admin/job-log/list"


def fill(rows: int, kept: int) -> None:
    with get_engine().begin() as conn:
        conn.execute(text(INSERT_LOGS), {
            "jobs": LOG_JOBS, "salt": "retention", "total": rows + kept, "first": 1,
            "last": rows + kept,
        })
    # The first `rows` rows are 40 days old, past the default 30-day horizon.
    with session_scope() as session:
        session.execute(
            update(JobLog).where(JobLog.id <= rows)
            .values(created_at=utcnow() - timedelta(days=40))
        )
    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE job_log"))


def sample_list(client: httpx.Client, stop: threading.Event, samples: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        assert client.get(LIST_PAGE).status_code == 200
        samples.append((time.perf_counter() - started) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="JobLog rows to prune")
    parser.add_argument("--kept", type=int, default=10_000, help="recent rows that stay")
    parser.add_argument("--idle-requests", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as run_dir, Stack(Path(run_dir)) as stack:
        stack.use_connecthub("retention", None)
        began = time.perf_counter()
        fill(args.rows, args.kept)
        print(f"filled {args.rows + args.kept:,} rows in {time.perf_counter() - began:.1f} s")
        admin, base_url = start_admin(Path(run_dir) / "admin.log", dict(os.environ))
        try:
            client = admin_session(base_url)
            idle: list[float] = []
            for _ in range(args.idle_requests):
                started = time.perf_counter()
                client.get(LIST_PAGE)
                idle.append((time.perf_counter() - started) * 1000)
            during: list[float] = []
            stop = threading.Event()
            sampler = threading.Thread(target=sample_list, args=(client, stop, during))
            sampler.start()
            began = time.perf_counter()
            report = prune()
            seconds = time.perf_counter() - began
            stop.set()
            sampler.join()
        finally:
            stop_process(admin)
        with session_scope() as session:
            left = session.scalar(select(func.count()).select_from(JobLog))
    idle_summary, during_summary = Summary(tuple(idle)), Summary(tuple(during))
    print(f"pruned {report.joblog:,} rows in {seconds:.1f} s ({report.joblog / seconds:,.0f} "
          f"rows/s); {left:,} rows left")
    print(f"JobLog list idle:        p50 {idle_summary.percentile(50):.1f} ms, "
          f"p95 {idle_summary.p95:.1f} ms (n={len(idle)})")
    print(f"JobLog list during prune: p50 {during_summary.percentile(50):.1f} ms, "
          f"p95 {during_summary.p95:.1f} ms (n={len(during)})")


if __name__ == "__main__":
    main()
