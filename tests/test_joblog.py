"""The JobLog store on both databases: every transition is one idempotent upsert of the row
(flow_run_id, attempt); Prefect's view never replaces a final status the body wrote; retry links;
and a database that cannot be reached is retried, then reported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import OperationalError

from connecthub.db import crud, joblog
from connecthub.db.engine import get_engine, session_scope
from connecthub.db.models import JobLog
from connecthub.jobs.spec import JobSpec
from connecthub.jobs.vocabulary import RunStatus, Trigger
from tests.support.processes import free_port


def log_count() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(JobLog))


def running(flow_run_id: str, attempt: int = 1, **values: object) -> int:
    return joblog.record_running(
        flow_run_id, attempt, job_id=str(values.get("job_id", "crm.sync")),
        trigger=Trigger(str(values.get("trigger", Trigger.MANUAL))),
        retry_of=values.get("retry_of"),  # type: ignore[arg-type]
        snapshot_params={"name": "Zoë"},
    )


def test_a_run_is_one_row_from_pending_to_final(any_db: None) -> None:
    pending = joblog.record_pending(
        "fr-1", job_id="crm.sync", trigger=Trigger.MANUAL, retry_of=None,
        snapshot_params=None,
    )
    assert joblog.find_attempt("fr-1", 1).status == RunStatus.PENDING
    assert running("fr-1") == pending
    started = joblog.find_attempt("fr-1", 1)
    assert started.status == RunStatus.RUNNING and started.started_at is not None
    assert started.snapshot_params == {"name": "Zoë"}
    final = joblog.record_final(
        "fr-1", 1, RunStatus.SUCCESS, job_id="crm.sync", result={"ok": True, "text": "Zoë"}
    )
    assert final == pending
    row = joblog.find_attempt("fr-1", 1)
    assert (row.status, row.result, row.trigger) == ("SUCCESS", {"ok": True, "text": "Zoë"},
                                                     "manual")
    assert row.started_at == started.started_at  # not part of the final write: kept
    assert row.finished_at is not None and row.duration_ms is not None
    assert row.duration_ms >= 0 and row.created_at.tzinfo is not None
    # A pending write of an attempt that exists changes nothing.
    joblog.record_pending(
        "fr-1", job_id="crm.sync", trigger=Trigger.RETRY, retry_of=None, snapshot_params={}
    )
    assert joblog.find_attempt("fr-1", 1).status == RunStatus.SUCCESS
    # The next attempt of the same flow run is its own row.
    assert running("fr-1", 2, trigger=Trigger.PREFECT_RETRY) != pending
    assert log_count() == 2
    assert joblog.latest_attempt("fr-1").attempt == 2


def test_prefect_view_never_replaces_a_final_status(any_db: None) -> None:
    running("fr-9")
    joblog.record_final("fr-9", 1, RunStatus.FAILED, job_id="crm.sync", error="boom",
                        traceback="Traceback ...")
    joblog.mirror_final(
        "fr-9", 1, RunStatus.CRASHED, job_id="crm.sync", trigger=Trigger.MANUAL,
        retry_of=None, snapshot_params=None, message="Process exited",
    )
    row = joblog.find_attempt("fr-9", 1)
    assert (row.status, row.error, row.traceback) == ("FAILED", "boom", "Traceback ...")

    # While the attempt is not final, the mirror does apply, with Prefect's end time.
    running("fr-10")
    ended = datetime.now(UTC) + timedelta(seconds=3)
    joblog.mirror_final(
        "fr-10", 1, RunStatus.CRASHED, job_id="crm.sync", trigger=Trigger.MANUAL,
        retry_of=None, snapshot_params=None, message="Process exited with -9", finished_at=ended,
    )
    row = joblog.find_attempt("fr-10", 1)
    assert (row.status, row.error) == ("CRASHED", "Process exited with -9")
    assert row.finished_at == ended and row.duration_ms >= 3000

    # An attempt Prefect ended before any body ran is created by the mirror, with what it knows.
    joblog.mirror_final(
        "fr-11", 1, RunStatus.CANCELLED, job_id="crm.sync", trigger=Trigger.SCHEDULE,
        retry_of=None, snapshot_params={"name": "Mars"}, message=None,
    )
    row = joblog.find_attempt("fr-11", 1)
    assert (row.status, row.error, row.trigger, row.snapshot_params) == (
        "CANCELLED", "Cancelled", "schedule", {"name": "Mars"})
    assert row.duration_ms is None  # it never started

    # The body is authoritative: its own final write replaces what the mirror wrote.
    joblog.record_final("fr-10", 1, RunStatus.SUCCESS, job_id="crm.sync", result=1)
    assert joblog.find_attempt("fr-10", 1).status == RunStatus.SUCCESS
    assert joblog.open_flow_run_ids() == []


def test_retry_links(any_db: None) -> None:
    first = running("fr-a")
    joblog.record_final("fr-a", 1, RunStatus.FAILED, job_id="crm.sync", error="down")
    # A ConnectHub retry names the JobLog it retries; a Prefect retry links the previous attempt.
    assert joblog.retry_link("fr-b", 1, first) == first
    assert joblog.retry_link("fr-a", 2, None) == first
    assert joblog.retry_link("fr-a", 2, 12345) == first
    # An id that is gone, never existed, or is not an id links nothing.
    assert joblog.retry_link("fr-b", 1, 999_999) is None
    assert joblog.retry_link("fr-b", 1, "7") is None
    assert joblog.retry_link("fr-b", 1, True) is None
    assert joblog.retry_link("fr-c", 3, None) is None
    retry = running("fr-b", retry_of=first, trigger=Trigger.RETRY)
    assert joblog.find_attempt("fr-b", 1).retry_of == first
    # Deleting the retried row keeps the retry, unlinked.
    with get_engine().begin() as connection:
        connection.execute(text("DELETE FROM job_log WHERE flow_run_id = 'fr-a'"))
    with session_scope() as session:
        assert session.get(JobLog, retry).retry_of is None


def test_history_stays_after_its_job_is_deleted(any_db: None) -> None:
    with session_scope() as session:
        crud.save_job(session, JobSpec(
            id="crm.sync", cron_expr="*/5 * * * *", handler_path="tests.plugins.jobs:EchoJob",
        ))
    first = running("fr-a")
    joblog.record_final("fr-a", 1, RunStatus.FAILED, job_id="crm.sync", error="down")
    running("fr-b", retry_of=first, trigger=Trigger.RETRY)
    joblog.record_final("fr-b", 1, RunStatus.SUCCESS, job_id="crm.sync")
    with session_scope() as session:
        crud.delete_job(session, "crm.sync")
    with session_scope() as session:
        logs = crud.recent_logs(session, job_id="crm.sync")
        assert [(log.flow_run_id, log.status) for log in logs] == [
            ("fr-b", "SUCCESS"), ("fr-a", "FAILED"),
        ]
        assert logs[0].retry_of == logs[1].id
        assert crud.last_status_by_job(session, ["crm.sync"]) == {"crm.sync": "SUCCESS"}


def test_an_unreachable_database_is_retried_then_reported(
    any_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = get_engine().url.render_as_string(hide_password=False)
    if url.startswith("sqlite"):
        bad = "sqlite:////nonexistent-dir/connecthub.db"
    else:
        bad = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    unreachable = create_engine(bad)
    with pytest.raises(OperationalError) as raised:
        joblog.retry_link("fr", 1, None, engine=unreachable)
    assert joblog.database_unavailable(raised.value)

    # Retried while unreachable, then the write goes through.
    sleeps: list[float] = []
    monkeypatch.setattr(joblog.time, "sleep", sleeps.append)
    calls = iter([raised.value, raised.value, None])

    def write() -> str:
        error = next(calls)
        if error is not None:
            raise error
        return "written"

    assert joblog.with_db_retry(write, "testing") == "written"
    assert sleeps == [0.5, 1.0]
    # Past the deadline, the error is raised; an error that is not about reaching the
    # database is raised at once.
    monkeypatch.setattr(joblog, "DB_RETRY_SECONDS", 0.0)
    with pytest.raises(OperationalError):
        joblog.with_db_retry(lambda: joblog.retry_link("fr", 1, None, engine=unreachable), "x")
    with pytest.raises(ZeroDivisionError):
        joblog.with_db_retry(lambda: 1 / 0, "x")


def test_queued_moves_only_a_run_that_has_not_started(any_db: None) -> None:
    # A scheduled run held for a slot has no row yet: QUEUED creates it, with what it knows.
    joblog.record_queued("fr-q", 1, job_id="crm.sync", trigger=Trigger.SCHEDULE, retry_of=None,
                         snapshot_params=None)
    assert joblog.find_attempt("fr-q", 1).status == RunStatus.QUEUED
    assert joblog.open_flow_run_ids() == ["fr-q"]
    # A run now that Prefect holds goes from PENDING to QUEUED, then RUNNING when it starts.
    joblog.record_pending("fr-p", job_id="crm.sync", trigger=Trigger.MANUAL, retry_of=None,
                          snapshot_params=None)
    joblog.record_queued("fr-p", 1, job_id="crm.sync", trigger=Trigger.MANUAL, retry_of=None,
                         snapshot_params=None)
    assert joblog.find_attempt("fr-p", 1).status == RunStatus.QUEUED
    running("fr-p")
    # A late QUEUED (the reconciler read Prefect before the run started) changes nothing.
    joblog.record_queued("fr-p", 1, job_id="crm.sync", trigger=Trigger.MANUAL, retry_of=None,
                         snapshot_params=None)
    assert joblog.find_attempt("fr-p", 1).status == RunStatus.RUNNING
    joblog.record_final("fr-p", 1, RunStatus.SUCCESS, job_id="crm.sync")
    joblog.record_queued("fr-p", 1, job_id="crm.sync", trigger=Trigger.MANUAL, retry_of=None,
                         snapshot_params=None)
    assert joblog.find_attempt("fr-p", 1).status == RunStatus.SUCCESS
