"""The JobLog store: every transition of a run's JobLog row, and the one upsert behind them.

A JobLog row is one attempt of one flow run, unique on (flow_run_id, attempt). Several writers
touch the same attempt, in any order: `record_pending` (run now and retry, before the flow
starts), `record_queued` (the reconciler: Prefect holds the run for a concurrency slot), the flow
body (`record_running`, then `record_final`), and Prefect's view of a run that ended without its
body recording it (`mirror_final`: the flow's crash and cancellation hooks, and the
reconciler). Each transition is one upsert of that row, so repeating a write is harmless;
`record_queued` only moves a row that has not started, and `mirror_final` never replaces a final
status a body wrote. A Prefect-UI retry
reruns the same flow run as the next attempt; `retry_link` gives it the previous attempt's id
as `retry_of`, whichever writer records it first.

Writers in a run's own process call these through `with_db_retry`: a database restart or
fail-over must neither lose a run's outcome nor turn it into a failure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError

from connecthub.db.engine import get_engine, session_scope
from connecthub.db.models import JobLog, utcnow
from connecthub.jobs.vocabulary import NON_FINAL, RunStatus, Trigger

T = TypeVar("T")
_table = JobLog.__table__
_logger = logging.getLogger("connecthub.joblog")
# How long a run's process keeps retrying a JobLog write while the database is unreachable.
DB_RETRY_SECONDS = 300.0


def _upsert(
    engine: Engine,
    flow_run_id: str,
    attempt: int,
    *,
    create: dict[str, Any],
    update: dict[str, Any],
    only_while: frozenset[RunStatus] | None = None,
) -> int:
    """Write the row (flow_run_id, attempt) and return its id.

    `create` (and `update`) are the values of a new row; an existing row gets only `update`,
    and, with `only_while`, only while its status is one of those.
    """
    insert = (postgresql if engine.dialect.name == "postgresql" else sqlite).insert(_table)
    statement = insert.values(
        flow_run_id=flow_run_id, attempt=attempt, created_at=utcnow(), **create, **update
    )
    if update:
        statement = statement.on_conflict_do_update(
            index_elements=["flow_run_id", "attempt"],
            set_={name: statement.excluded[name] for name in update},
            where=None if only_while is None else _table.c.status.in_(only_while),
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=["flow_run_id", "attempt"])
    with engine.begin() as connection:
        connection.execute(statement)
        return connection.execute(
            select(_table.c.id).where(
                _table.c.flow_run_id == flow_run_id, _table.c.attempt == attempt
            )
        ).scalar_one()


def _started_at(engine: Engine, flow_run_id: str, attempt: int) -> datetime | None:
    with engine.connect() as connection:
        return connection.execute(
            select(JobLog.started_at).where(
                JobLog.flow_run_id == flow_run_id, JobLog.attempt == attempt
            )
        ).scalar_one_or_none()


def _duration_ms(started: datetime | None, finished: datetime) -> int | None:
    if started is None:
        return None
    return int((finished - started).total_seconds() * 1000)


def retry_link(
    flow_run_id: str, attempt: int, retry_of: Any, *, engine: Engine | None = None
) -> int | None:
    """The `retry_of` of this attempt: the previous attempt's id for a Prefect retry (attempt
    > 1), else the `retry_of` the run was started with, if that JobLog still exists."""
    engine = engine or get_engine()
    with engine.connect() as connection:
        if attempt > 1:
            previous = connection.execute(
                select(JobLog.id).where(
                    JobLog.flow_run_id == flow_run_id, JobLog.attempt == attempt - 1
                )
            ).scalar_one_or_none()
            if previous is not None:
                return previous
        if not isinstance(retry_of, int) or isinstance(retry_of, bool):
            return None
        found = connection.execute(select(JobLog.id).where(JobLog.id == retry_of))
        return found.scalar_one_or_none()


def record_pending(
    flow_run_id: str,
    *,
    job_id: str,
    trigger: Trigger,
    retry_of: int | None,
    snapshot_params: dict[str, Any] | None,
) -> int:
    """A run ConnectHub just created (run now, retry): attempt 1, PENDING, shown at once."""
    return _upsert(
        get_engine(), flow_run_id, 1,
        create={
            "job_id": job_id, "trigger": trigger.value, "retry_of": retry_of,
            "status": RunStatus.PENDING.value, "snapshot_params": snapshot_params,
        },
        update={},
    )


def record_queued(
    flow_run_id: str,
    attempt: int,
    *,
    job_id: str,
    trigger: Trigger,
    retry_of: int | None,
    snapshot_params: dict[str, Any] | None,
) -> int:
    """Prefect holds this attempt until its job's concurrency limit frees a slot."""
    return _upsert(
        get_engine(), flow_run_id, attempt,
        create={
            "job_id": job_id, "trigger": trigger.value, "retry_of": retry_of,
            "snapshot_params": snapshot_params,
        },
        update={"status": RunStatus.QUEUED.value},
        only_while=frozenset({RunStatus.PENDING, RunStatus.QUEUED}),
    )


def record_running(
    flow_run_id: str,
    attempt: int,
    *,
    job_id: str,
    trigger: Trigger,
    retry_of: int | None,
    snapshot_params: dict[str, Any] | None,
) -> int:
    """The flow body began this attempt with exactly `snapshot_params`."""
    return _upsert(
        get_engine(), flow_run_id, attempt,
        create={"job_id": job_id, "trigger": trigger.value, "retry_of": retry_of},
        update={
            "status": RunStatus.RUNNING.value, "started_at": utcnow(),
            "snapshot_params": snapshot_params,
        },
    )


def record_final(
    flow_run_id: str,
    attempt: int,
    status: RunStatus,
    *,
    job_id: str,
    result: Any = None,
    error: str | None = None,
    traceback: str | None = None,
) -> int:
    """The flow body's own outcome of this attempt (it replaces whatever was recorded)."""
    engine = get_engine()
    finished = utcnow()
    values: dict[str, Any] = {
        "status": status.value, "finished_at": finished,
        "duration_ms": _duration_ms(_started_at(engine, flow_run_id, attempt), finished),
        "result": result, "error": error, "traceback": traceback,
    }
    return _upsert(engine, flow_run_id, attempt, create={"job_id": job_id}, update=values)


def mirror_final(
    flow_run_id: str,
    attempt: int,
    status: RunStatus,
    *,
    job_id: str,
    trigger: Trigger,
    retry_of: int | None,
    snapshot_params: dict[str, Any] | None,
    message: str | None,
    finished_at: datetime | None = None,
) -> int:
    """Prefect's final state of an attempt whose body did not record it (never over a final
    status the body wrote). A SUCCESS mirrored here keeps no error; other states keep
    Prefect's message."""
    engine = get_engine()
    finished = finished_at or utcnow()
    values: dict[str, Any] = {
        "status": status.value, "finished_at": finished,
        "duration_ms": _duration_ms(_started_at(engine, flow_run_id, attempt), finished),
    }
    if status is not RunStatus.SUCCESS:
        values["error"] = message or status.value.title()
    return _upsert(
        engine, flow_run_id, attempt,
        create={
            "job_id": job_id, "trigger": trigger.value, "retry_of": retry_of,
            "snapshot_params": snapshot_params,
        },
        update=values,
        only_while=NON_FINAL,
    )


def find_attempt(flow_run_id: str, attempt: int) -> JobLog | None:
    with session_scope() as session:
        return session.scalars(
            select(JobLog).where(JobLog.flow_run_id == flow_run_id, JobLog.attempt == attempt)
        ).one_or_none()


def latest_attempt(flow_run_id: str) -> JobLog | None:
    with session_scope() as session:
        return session.scalars(
            select(JobLog)
            .where(JobLog.flow_run_id == flow_run_id)
            .order_by(JobLog.attempt.desc())
            .limit(1)
        ).one_or_none()


def open_flow_run_ids(limit: int = 500) -> list[str]:
    """The flow runs of JobLogs not yet final, oldest first."""
    with get_engine().connect() as connection:
        return [
            flow_run_id
            for (flow_run_id,) in connection.execute(
                select(JobLog.flow_run_id)
                .where(JobLog.status.in_(NON_FINAL), JobLog.flow_run_id.is_not(None))
                .order_by(JobLog.id)
                .limit(limit)
            )
        ]


def database_unavailable(error: BaseException) -> bool:
    """Whether `error` says the database could not be reached (so the write may be retried)."""
    if isinstance(error, OperationalError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def with_db_retry(write: Callable[[], T], what: str) -> T:
    """`write()`, retried with backoff while the database cannot be reached."""
    deadline = time.monotonic() + DB_RETRY_SECONDS
    delay = 0.5
    while True:
        try:
            return write()
        except DBAPIError as error:
            if not database_unavailable(error) or time.monotonic() + delay > deadline:
                raise
            _logger.warning(
                "database unreachable while %s (%s); retrying in %.1f s",
                what, type(error.orig).__name__, delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
