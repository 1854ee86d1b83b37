"""Retention of ConnectHub's own history on a real PostgreSQL database: `prune()` deletes the
JobLog rows older than the horizon and keeps the newer ones, in batches; each job keeps at most
its own `max_log_rows`, else JOBLOG_MAX_ROWS_PER_JOB; and a dry run (`prune()` and `connecthub
prune --dry-run`) counts exactly the rows a prune then deletes, deleting none."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from connecthub.db import retention
from connecthub.db.engine import session_scope
from connecthub.db.models import JobLog, utcnow
from connecthub.jobs.vocabulary import RunStatus
from tests.support.cli import Cli
from tests.support.jobs import save
from tests.support.settings import use_settings


def add_logs(job_id: str, count: int, age: timedelta = timedelta(0)) -> list[int]:
    """`count` finished JobLog rows of `job_id` created `age` ago; their ids, oldest first."""
    created = utcnow() - age
    rows = [
        JobLog(job_id=job_id, status=RunStatus.SUCCESS.value, created_at=created)
        for _ in range(count)
    ]
    with session_scope() as session:
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def log_ids(job_id: str) -> list[int]:
    with session_scope() as session:
        return list(session.scalars(
            select(JobLog.id).where(JobLog.job_id == job_id).order_by(JobLog.id)
        ))


def all_log_ids() -> list[int]:
    with session_scope() as session:
        return list(session.scalars(select(JobLog.id).order_by(JobLog.id)))


EXPIRED = timedelta(days=40)  # past the default horizon of 30 days


def test_rows_past_the_horizon_go_in_batches_and_newer_ones_stay(
    pg_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    save("crm.sync")
    old = add_logs("crm.sync", 5, EXPIRED)
    recent = add_logs("crm.sync", 3, timedelta(days=29))

    dry = retention.prune(dry_run=True)
    assert (dry.joblog_expired, dry.joblog_over_cap) == (5, 0)
    assert log_ids("crm.sync") == old + recent  # a dry run deletes nothing

    # Two ids per batch, one batch per call: each call deletes the two oldest expired rows.
    monkeypatch.setattr(retention, "BATCH", 2)
    assert retention.prune(max_batches=1).joblog_expired == 2
    assert log_ids("crm.sync") == old[2:] + recent
    assert retention.prune().joblog_expired == 3  # unbounded: the rest, two ids at a time
    assert log_ids("crm.sync") == recent
    assert retention.prune(dry_run=True).joblog == 0


def test_a_jobs_own_cap_overrides_the_global_one(
    pg_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_settings(monkeypatch, JOBLOG_MAX_ROWS_PER_JOB="3")
    save("own.small", max_log_rows=2)
    save("own.large", max_log_rows=10)
    save("global.cap")
    logs = {job_id: add_logs(job_id, 5) for job_id in ("own.small", "own.large", "global.cap")}
    logs["deleted.job"] = add_logs("deleted.job", 4)  # history of a job no longer defined

    dry = retention.prune(dry_run=True)
    assert (dry.joblog_expired, dry.joblog_over_cap) == (0, 3 + 0 + 2 + 1)
    assert sum(map(len, logs.values())) == len(all_log_ids())

    monkeypatch.setattr(retention, "BATCH", 2)
    report = retention.prune()
    assert report.joblog_over_cap == dry.joblog_over_cap
    assert log_ids("own.small") == logs["own.small"][-2:]  # the newest rows stay
    assert log_ids("own.large") == logs["own.large"]
    assert log_ids("global.cap") == logs["global.cap"][-3:]
    assert log_ids("deleted.job") == logs["deleted.job"][-3:]


def test_without_a_global_cap_only_the_jobs_own_caps_apply(pg_env: None) -> None:
    save("capped", max_log_rows=1)
    save("uncapped")
    capped = add_logs("capped", 4)
    uncapped = add_logs("uncapped", 4)

    assert retention.prune(dry_run=True).joblog_over_cap == 3
    assert retention.prune().joblog_over_cap == 3
    assert log_ids("capped") == capped[-1:]
    assert log_ids("uncapped") == uncapped


def test_expired_rows_count_once_with_a_cap(pg_env: None) -> None:
    # Over its cap only through expired rows: a prune deletes those as expired, and the cap
    # then has nothing left to delete; the dry run must not count them twice.
    save("mixed", max_log_rows=2)
    expired = add_logs("mixed", 3, EXPIRED)
    recent = add_logs("mixed", 3)

    dry = retention.prune(dry_run=True)
    assert (dry.joblog_expired, dry.joblog_over_cap) == (3, 1)
    report = retention.prune()
    assert (report.joblog_expired, report.joblog_over_cap) == (3, 1)
    assert log_ids("mixed") == recent[-2:]
    assert not set(expired) & set(all_log_ids())


def test_cli_dry_run_counts_what_prune_deletes(pg_env: None, tmp_path: Path) -> None:
    save("crm.sync", max_log_rows=2)
    add_logs("crm.sync", 2, EXPIRED)
    add_logs("crm.sync", 4)
    before = all_log_ids()
    cli = Cli(data_dir=Path(os.environ["DATA_DIR"]), cwd=tmp_path)
    session_db = {key: os.environ[key] for key in ("DATA_DIR", "DB_URL", "FERNET_KEY_PATH")}

    dry = cli.run("prune", "--dry-run", **session_db)
    # Prefect is unreachable for `Cli`: that part fails, after ConnectHub's rows are counted.
    counted = re.search(
        r"would prune (\d+) JobLog row\(s\) older than .*, (\d+) over the per-job cap", dry.stdout
    )
    assert counted, (dry.stdout, dry.stderr)
    assert (int(counted[1]), int(counted[2])) == (2, 2)
    assert all_log_ids() == before

    report = retention.prune()
    assert (report.joblog_expired, report.joblog_over_cap) == (2, 2)
    assert len(all_log_ids()) == 2
