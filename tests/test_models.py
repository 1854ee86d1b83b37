"""Job and JobLog on both databases: the schema at head and the models matching it, save and
read, secrets at rest, the job id CHECK constraint, the idempotent JobLog upsert, history that
outlives its job, last_status_by_job."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from connecthub.core.config import get_settings
from connecthub.db import crud
from connecthub.db.engine import get_engine, session_scope
from connecthub.db.migrate import check_schema, current_revision, head_revision, upgrade
from connecthub.db.models import Base, Job, JobLog, RunStatus
from connecthub.db.runlog import DatabaseUnavailableError, RunLog, upsert_attempt
from connecthub.jobs.spec import JobSpec
from connecthub.security.fernet import decrypt_json
from tests.engine import free_port

ECHO = "tests.plugins.jobs:EchoJob"
SECRET = "sk_live_models_5f2b9c81d4e7"


def spec(job_id: str = "crm.sync", **fields: Any) -> JobSpec:
    values: dict[str, Any] = {"id": job_id, "cron_expr": "*/5 * * * *", "handler_path": ECHO}
    values.update(fields)
    return JobSpec(**values)


def save(job_spec: JobSpec) -> None:
    with session_scope() as session:
        crud.save_job(session, job_spec)


def insert_raw_job(job_id: str) -> None:
    """Insert a job row with plain SQL, bypassing JobSpec and the ORM."""
    now = datetime.now(UTC)
    with get_engine().begin() as conn:
        conn.execute(
            text(
                "INSERT INTO job (id, name, cron_expr, timezone, handler_path, public_cfg, "
                "enabled, max_retries, retry_delay_seconds, collision_strategy, tags, "
                "created_at, updated_at) VALUES (:id, 'raw', '* * * * *', 'UTC', :handler, "
                "'{}', TRUE, 0, 60, 'ENQUEUE', '[]', :now, :now)"
            ),
            {"id": job_id, "handler": ECHO, "now": now},
        )


def log_count() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(JobLog))


def test_schema_is_at_head_and_upgrade_is_idempotent(any_db: None) -> None:
    engine = get_engine()
    assert current_revision(engine) == head_revision() == "0003"
    upgrade(engine)  # a second run changes nothing and does not fail
    check_schema(engine)
    assert current_revision(engine) == "0003"


def test_models_match_the_migrations(pg_env: None) -> None:
    # On PostgreSQL, where the expression indexes (and their operator classes) can be reflected.
    with get_engine().connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_save_and_read_job(any_db: None) -> None:
    public = {"name": "Zoë", "nested": {"ids": [1, 2, 3], "flag": True}}
    save(spec(
        name="CRM sync", description="nightly", cron_expr="  0  3 * * 1-5 ",
        timezone="Europe/Berlin", public_cfg=public, secret_cfg={"token": SECRET},
        timeout_seconds=300, max_retries=2, retry_delay_seconds=30, tags=["crm", "nightly"],
    ))
    with session_scope() as session:
        job = crud.get_job(session, "crm.sync")
        assert job.name == "CRM sync"
        assert job.description == "nightly"
        assert job.cron_expr == "0 3 * * 1-5"
        assert job.timezone == "Europe/Berlin"
        assert job.handler_path == ECHO
        assert job.public_cfg == public
        assert job.enabled is True
        assert job.timeout_seconds == 300
        assert (job.max_retries, job.retry_delay_seconds) == (2, 30)
        assert job.concurrency_limit == 1
        assert job.collision_strategy == "ENQUEUE"
        assert job.tags == ["crm", "nightly"]
        assert job.created_at is not None and job.updated_at is not None
        assert job.deployment_id is None and job.sync_error is None
        assert decrypt_json(job.secret_cfg, job_id=job.id) == {"token": SECRET}
        assert [j.id for j in crud.list_jobs(session)] == ["crm.sync"]


def test_save_job_upserts_and_keeps_secrets_when_none(any_db: None) -> None:
    save(spec(secret_cfg={"token": SECRET}, public_cfg={"v": 1}))
    save(spec(secret_cfg=None, public_cfg={"v": 2}, name="renamed"))
    with session_scope() as session:
        jobs = crud.list_jobs(session)
        assert [job.id for job in jobs] == ["crm.sync"]
        assert jobs[0].name == "renamed"
        assert jobs[0].public_cfg == {"v": 2}
        assert decrypt_json(jobs[0].secret_cfg) == {"token": SECRET}
    save(spec(secret_cfg={}))  # {} clears the secrets
    with session_scope() as session:
        assert crud.get_job(session, "crm.sync").secret_cfg is None
    with session_scope() as session, pytest.raises(crud.JobExistsError):
        crud.save_job(session, spec(), must_be_new=True)


def test_secret_cfg_is_stored_only_as_a_fernet_token(any_db: None) -> None:
    secrets = {"token": SECRET, "password": "hunter2-very-secret", "port": 5432}
    save(spec(secret_cfg=secrets))
    with get_engine().connect() as conn:
        stored = conn.execute(text("SELECT secret_cfg FROM job WHERE id = 'crm.sync'")).scalar()
        whole_row = str(conn.execute(text("SELECT * FROM job")).all())
    assert isinstance(stored, str)
    assert stored.startswith("gAAAAA")  # a Fernet token (version byte 0x80)
    for plaintext in (SECRET, "hunter2-very-secret", "token", "password"):
        assert plaintext not in stored
        assert plaintext not in whole_row
    assert decrypt_json(stored, job_id="crm.sync") == secrets


@pytest.mark.parametrize(
    "bad_id",
    ["bad id", "bad/id", "semi;colon", "ümlaut", "", "trailing-newline\n", "quote'd"],
)
def test_database_rejects_invalid_job_id(any_db: None, bad_id: str) -> None:
    insert_raw_job("good.id-1_A")  # the same statement succeeds with a valid id
    with pytest.raises(IntegrityError):
        insert_raw_job(bad_id)
    with session_scope() as session:
        assert [job.id for job in crud.list_jobs(session)] == ["good.id-1_A"]


def test_database_rejects_overlong_job_id(any_db: None) -> None:
    insert_raw_job("a" * 200)
    with pytest.raises(DBAPIError):  # CHECK on SQLite, varchar(200) on PostgreSQL
        insert_raw_job("b" * 201)


def test_database_rejects_duplicate_attempt(any_db: None) -> None:
    statement = text(
        "INSERT INTO job_log (job_id, status, \"trigger\", flow_run_id, attempt, created_at) "
        "VALUES ('crm.sync', 'RUNNING', 'manual', 'fr-1', 1, :now)"
    )
    with get_engine().begin() as conn:
        conn.execute(statement, {"now": datetime.now(UTC)})
    with pytest.raises(IntegrityError), get_engine().begin() as conn:
        conn.execute(statement, {"now": datetime.now(UTC)})
    assert log_count() == 1


def test_record_attempt_twice_leaves_one_row(any_db: None) -> None:
    with session_scope() as session:
        first = crud.record_attempt(
            session, "fr-1", 1,
            create={"job_id": "crm.sync", "trigger": "manual"},
            update_values={"status": "RUNNING", "started_at": datetime.now(UTC)},
        )
        first_id = first.id
    with session_scope() as session:
        second = crud.record_attempt(
            session, "fr-1", 1,
            create={"job_id": "crm.sync", "trigger": "manual"},
            update_values={"status": "SUCCESS", "result": {"ok": True}},
        )
        assert second.id == first_id
        assert second.status == "SUCCESS"
        assert second.result == {"ok": True}
        assert second.started_at is not None  # not part of the second write, kept
    with session_scope() as session:
        # A create-only write of an existing attempt changes nothing.
        again = crud.record_attempt(
            session, "fr-1", 1, create={"job_id": "crm.sync", "status": "PENDING"}
        )
        assert (again.id, again.status) == (first_id, "SUCCESS")
        # Another attempt of the same flow run is its own row.
        other = crud.record_attempt(
            session, "fr-1", 2, create={"job_id": "crm.sync", "trigger": "prefect-retry"},
            update_values={"status": "RUNNING"},
        )
        assert other.id != first_id
    assert log_count() == 2


def test_non_final_write_does_not_overwrite_final_status(any_db: None) -> None:
    with session_scope() as session:
        crud.record_attempt(
            session, "fr-9", 1, create={"job_id": "crm.sync"},
            update_values={"status": RunStatus.FAILED.value, "error": "boom"},
        )
    with session_scope() as session:
        late = crud.record_attempt(
            session, "fr-9", 1, create={"job_id": "crm.sync"},
            update_values={"status": RunStatus.RUNNING.value, "error": None},
            overwrite_final=False,
        )
        assert (late.status, late.error) == ("FAILED", "boom")
    with session_scope() as session:
        # While not final, the same guarded write does apply ...
        crud.record_attempt(
            session, "fr-10", 1, create={"job_id": "crm.sync"},
            update_values={"status": RunStatus.PENDING.value},
        )
        running = crud.record_attempt(
            session, "fr-10", 1, create={"job_id": "crm.sync"},
            update_values={"status": RunStatus.RUNNING.value}, overwrite_final=False,
        )
        assert running.status == "RUNNING"
        # ... and overwrite_final=True does overwrite a final status.
        forced = crud.record_attempt(
            session, "fr-9", 1, create={"job_id": "crm.sync"},
            update_values={"status": RunStatus.CRASHED.value},
        )
        assert forced.status == "CRASHED"
    assert log_count() == 2


def test_job_log_history_stays_after_job_is_deleted(any_db: None) -> None:
    save(spec(secret_cfg={"token": SECRET}))
    with session_scope() as session:
        first = crud.record_attempt(
            session, "fr-a", 1, create={"job_id": "crm.sync"},
            update_values={"status": "FAILED", "error": "down"},
        )
        crud.record_attempt(
            session, "fr-b", 1,
            create={"job_id": "crm.sync", "trigger": "retry", "retry_of": first.id},
            update_values={"status": "SUCCESS"},
        )
    with session_scope() as session:
        crud.delete_job(session, "crm.sync")
    with session_scope() as session:
        assert session.get(Job, "crm.sync") is None
        with pytest.raises(crud.JobNotFoundError):
            crud.get_job(session, "crm.sync")
        logs = crud.recent_logs(session, job_id="crm.sync")
        assert [(log.flow_run_id, log.status) for log in logs] == [
            ("fr-b", "SUCCESS"), ("fr-a", "FAILED"),
        ]
        assert logs[0].retry_of == logs[1].id
        assert crud.last_status_by_job(session, ["crm.sync"]) == {"crm.sync": "SUCCESS"}


def test_deleting_a_retried_log_nulls_retry_of(any_db: None) -> None:
    with session_scope() as session:
        first = crud.record_attempt(session, "fr-a", 1, create={"job_id": "j"})
        retry = crud.record_attempt(
            session, "fr-b", 1, create={"job_id": "j", "retry_of": first.id}
        )
        retry_id = retry.id
    with get_engine().begin() as conn:
        conn.execute(text("DELETE FROM job_log WHERE flow_run_id = 'fr-a'"))
    with session_scope() as session:
        assert session.get(JobLog, retry_id).retry_of is None


def test_last_status_by_job(any_db: None) -> None:
    writes = [
        ("alpha", "fr-1", "FAILED"),
        ("beta", "fr-2", "RUNNING"),
        ("alpha", "fr-3", "SUCCESS"),
        ("gamma", "fr-4", "SUCCESS"),
        ("gamma", "fr-5", "CRASHED"),
    ]
    with session_scope() as session:
        for job_id, flow_run_id, status in writes:
            crud.record_attempt(
                session, flow_run_id, 1, create={"job_id": job_id},
                update_values={"status": status},
            )
        # A later write of an older attempt does not make it the newest.
        crud.record_attempt(
            session, "fr-1", 1, create={"job_id": "alpha"}, update_values={"status": "CANCELLED"}
        )
    with session_scope() as session:
        assert crud.last_status_by_job(session, ["alpha", "beta", "gamma", "delta"]) == {
            "alpha": "SUCCESS", "beta": "RUNNING", "gamma": "CRASHED",
        }
        assert crud.last_status_by_job(session, ["beta"]) == {"beta": "RUNNING"}
        assert crud.last_status_by_job(session, []) == {}
        assert [log.status for log in crud.open_logs(session)] == ["RUNNING"]


# --- runlog: the flow process's driver-level reads and writes ----------------------------------


def test_runlog_writes_what_the_orm_reads(any_db: None) -> None:
    """RunLog (the DB-API driver alone) and the ORM agree on every column type."""
    with session_scope() as session:
        crud.save_job(session, JobSpec(
            id="crm.sync", handler_path="tests.plugins.jobs:EchoJob", cron_expr="0 3 * * *",
            public_cfg={"name": "Zoë", "n": [1, 2]}, secret_cfg={"token": "t0ken"},
            timeout_seconds=30, max_retries=2, retry_delay_seconds=5, enabled=False,
        ))
    run_log = RunLog(get_settings().database_url)
    try:
        job = run_log.read_job("crm.sync")
        assert job is not None and run_log.read_job("missing") is None
        assert (job.handler_path, job.public_cfg, job.enabled) == (
            "tests.plugins.jobs:EchoJob", {"name": "Zoë", "n": [1, 2]}, False)
        assert (job.timeout_seconds, job.max_retries, job.retry_delay_seconds) == (30, 2, 5)
        assert decrypt_json(job.secret_cfg or "") == {"token": "t0ken"}

        started = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
        first = run_log.record_attempt(
            "fr-r", 1, create={"job_id": "crm.sync", "trigger": "schedule"},
            update_values={"status": "RUNNING", "started_at": started,
                           "snapshot_params": {"name": "Zoë"}},
        )
        assert first.started_at == started
        assert run_log.find_attempt("fr-r", 1) == first
        assert run_log.find_attempt("fr-r", 2) is None
        # Guarded like crud.record_attempt: a late non-final write keeps a final status.
        run_log.record_attempt("fr-r", 1, create={"job_id": "crm.sync"},
                               update_values={"status": "SUCCESS", "result": 7,
                                              "duration_ms": 1234})
        late = run_log.record_attempt("fr-r", 1, create={"job_id": "crm.sync"},
                                      update_values={"status": "CRASHED"},
                                      overwrite_final=False)
        assert late.id == first.id
    finally:
        run_log.close()
    with session_scope() as session:
        row = crud.find_attempt(session, "fr-r", 1)
        assert row is not None
        assert (row.status, row.trigger, row.result, row.duration_ms) == (
            "SUCCESS", "schedule", 7, 1234)
        assert row.snapshot_params == {"name": "Zoë"}
        assert row.started_at == started and row.created_at.tzinfo is not None
    assert log_count() == 1


def test_runlog_reports_an_unreachable_database_as_retryable(any_db: None) -> None:
    url = get_settings().database_url
    if url.startswith("sqlite"):
        bad = "sqlite:////nonexistent-dir/connecthub.db"
    else:
        bad = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    run_log = RunLog(bad)
    with pytest.raises(DatabaseUnavailableError):
        run_log.read_job("crm.sync")
    with pytest.raises(ValueError, match="unsupported"):
        RunLog("mysql://localhost/db")
    with pytest.raises(ValueError, match="not JobLog columns"):
        upsert_attempt("sqlite", "fr", 1, create={"job_id": "x", "evil; DROP": 1})
