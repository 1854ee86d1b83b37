"""Job and JobLog on both databases: the schema at head and the models matching it, save and
read, secrets at rest, the job id CHECK constraint, last_status_by_job. The JobLog transitions
are tested in test_joblog."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from connecthub.db import crud, joblog
from connecthub.db.engine import get_engine, session_scope
from connecthub.db.migrate import check_schema, current_revision, head_revision, upgrade
from connecthub.db.models import Base, JobLog
from connecthub.jobs.spec import JobSpec
from connecthub.jobs.vocabulary import RunStatus, Trigger
from connecthub.security.fernet import decrypt_json

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


def record(flow_run_id: str, job_id: str, status: RunStatus, attempt: int = 1) -> int:
    """A JobLog attempt in `status`, written through the store as the flow would."""
    log_id = joblog.record_running(
        flow_run_id, attempt, job_id=job_id, trigger=Trigger.SCHEDULE, retry_of=None,
        snapshot_params={},
    )
    if status.is_final:
        joblog.record_final(flow_run_id, attempt, status, job_id=job_id)
    return log_id


def log_count() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(JobLog))


def test_schema_is_at_head_and_upgrade_is_idempotent(any_db: None) -> None:
    engine = get_engine()
    assert current_revision(engine) == head_revision() == "0009"
    upgrade(engine)  # a second run changes nothing and does not fail
    check_schema(engine)
    assert current_revision(engine) == "0009"


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


def test_last_status_by_job(any_db: None) -> None:
    writes = [
        ("alpha", "fr-1", "FAILED"),
        ("beta", "fr-2", "RUNNING"),
        ("alpha", "fr-3", "SUCCESS"),
        ("gamma", "fr-4", "SUCCESS"),
        ("gamma", "fr-5", "CRASHED"),
    ]
    for job_id, flow_run_id, status in writes:
        record(flow_run_id, job_id, RunStatus(status))
    # A later write of an older attempt does not make it the newest.
    record("fr-1", "alpha", RunStatus.CANCELLED)
    with session_scope() as session:
        assert crud.last_status_by_job(session, ["alpha", "beta", "gamma", "delta"]) == {
            "alpha": "SUCCESS", "beta": "RUNNING", "gamma": "CRASHED",
        }
        assert crud.last_status_by_job(session, ["beta"]) == {"beta": "RUNNING"}
        assert crud.last_status_by_job(session, []) == {}
    assert joblog.open_flow_run_ids() == ["fr-2"]
