"""JobLog attempts and the Job read of a run's own process, at the DB-API driver level.

`upsert_attempt` is the one definition of "record an attempt": the upsert of the JobLog row of
(flow_run_id, attempt). `crud.record_attempt` runs it through SQLAlchemy; the process of a flow
run runs it through `RunLog`, which talks to the driver alone (psycopg, or sqlite3 for the
embedded mode). Every run starts a new Python process, and importing SQLAlchemy's ORM and
connecting through it cost each run about 0.4 s (docs/benchmarks.md, bench/findings.md); the
driver alone costs a tenth of that. This module therefore imports neither SQLAlchemy nor the
models; the statuses and triggers live here and `models` re-exports them.
"""

from __future__ import annotations

import enum
import json
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class RunStatus(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self not in (RunStatus.PENDING, RunStatus.RUNNING)


class Trigger(enum.StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    RETRY = "retry"
    PREFECT_RETRY = "prefect-retry"


NON_FINAL = (RunStatus.PENDING.value, RunStatus.RUNNING.value)
JOB_LOG_COLUMNS = frozenset({
    "job_id", "status", "trigger", "flow_run_id", "attempt", "retry_of", "snapshot_params",
    "result", "error", "traceback", "created_at", "started_at", "finished_at", "duration_ms",
})
_JSON_COLUMNS = frozenset({"snapshot_params", "result"})
_TIME_COLUMNS = frozenset({"created_at", "started_at", "finished_at"})
# How SQLAlchemy stores a DateTime on SQLite: naive, here always UTC.
_SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def utcnow() -> datetime:
    return datetime.now(UTC)


def duration_ms(started: datetime | None, finished: datetime) -> int | None:
    if started is None:
        return None
    return int((finished - started).total_seconds() * 1000)


def upsert_attempt(
    dialect: str,
    flow_run_id: str,
    attempt: int,
    *,
    create: dict[str, Any],
    update_values: dict[str, Any] | None = None,
    overwrite_final: bool = True,
) -> tuple[str, dict[str, Any]]:
    """The upsert of the JobLog row (flow_run_id, attempt), as SQL with `:name` parameters.

    `create` are the values of a new row; on an existing row only `update_values` are written,
    and, unless `overwrite_final`, only while the row is not yet in a final status. `dialect` is
    "postgresql" or "sqlite" (the statement is the same but for how JSON is bound).
    """
    values = {
        "status": RunStatus.PENDING.value, "trigger": Trigger.MANUAL.value,  # the model's defaults
        "flow_run_id": flow_run_id, "attempt": attempt, "created_at": utcnow(),
        **create, **(update_values or {}),
    }
    unknown = set(values) - JOB_LOG_COLUMNS
    if unknown:
        raise ValueError(f"not JobLog columns: {sorted(unknown)}")
    columns = ", ".join(f'"{name}"' for name in values)
    placeholders = ", ".join(_placeholder(dialect, name) for name in values)
    sql = (
        f"INSERT INTO job_log ({columns}) VALUES ({placeholders}) "
        'ON CONFLICT ("flow_run_id", "attempt") DO '
    )
    if update_values:
        sql += "UPDATE SET " + ", ".join(f'"{name}" = excluded."{name}"' for name in update_values)
        if not overwrite_final:
            sql += " WHERE job_log.status IN ('PENDING', 'RUNNING')"
    else:
        sql += "NOTHING"
    return sql, {name: _bind(dialect, name, value) for name, value in values.items()}


def _placeholder(dialect: str, name: str) -> str:
    if name in _JSON_COLUMNS and dialect == "postgresql":
        return f"CAST(:{name} AS json)"
    return f":{name}"


def _bind(dialect: str, name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _JSON_COLUMNS:
        return json.dumps(value)
    if name in _TIME_COLUMNS:
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return value.strftime(_SQLITE_TIME_FORMAT) if dialect == "sqlite" else value
    return value


def _read_time(value: datetime | str | None) -> datetime | None:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class DatabaseUnavailableError(Exception):
    """The database could not be reached (or went away); the statement may be retried."""


@dataclass(frozen=True)
class JobRow:
    """What a run needs of its Job."""

    id: str
    handler_path: str
    public_cfg: dict[str, Any]
    secret_cfg: str | None
    enabled: bool
    timeout_seconds: int | None
    max_retries: int
    retry_delay_seconds: int


@dataclass(frozen=True)
class Attempt:
    id: int
    started_at: datetime | None


class RunLog:
    """One DB-API connection to DB_URL, opened on first use and again after a failure."""

    def __init__(self, database_url: str) -> None:
        scheme = database_url.split(":", 1)[0]
        self.dialect = scheme.split("+", 1)[0]
        if self.dialect not in ("postgresql", "sqlite"):
            raise ValueError(f"unsupported database URL scheme '{scheme}'")
        self._url = database_url
        self._connection: Any = None

    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            connection = sqlite3.connect(sqlite_path(self._url) or ":memory:", timeout=30)
            connection.execute("PRAGMA busy_timeout=30000")
            connection.execute("PRAGMA foreign_keys=ON")
            return connection
        import psycopg  # only PostgreSQL deployments pay for it

        return psycopg.connect("postgresql:" + self._url.split(":", 1)[1], connect_timeout=10)

    def _execute(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run one statement in its own transaction; the rows it returns."""
        if self.dialect == "postgresql":
            sql = re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql)
            import psycopg

            unavailable: tuple[type[Exception], ...] = (
                psycopg.OperationalError, psycopg.InterfaceError
            )
        else:
            unavailable = (sqlite3.OperationalError,)
        try:
            if self._connection is None:
                self._connection = self._connect()
            cursor = self._connection.execute(sql, params)
            rows = cursor.fetchall() if cursor.description else []
            self._connection.commit()
            return rows
        except unavailable as error:
            self.close()
            raise DatabaseUnavailableError(type(error).__name__) from error
        except BaseException:
            if self._connection is not None:
                self._connection.rollback()
            raise

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    def read_job(self, job_id: str) -> JobRow | None:
        rows = self._execute(
            "SELECT id, handler_path, public_cfg, secret_cfg, enabled, timeout_seconds, "
            "max_retries, retry_delay_seconds FROM job WHERE id = :id", {"id": job_id},
        )
        if not rows:
            return None
        row = rows[0]
        public_cfg = json.loads(row[2]) if isinstance(row[2], str) else row[2]
        return JobRow(row[0], row[1], public_cfg or {}, row[3], bool(row[4]), row[5],
                      row[6], row[7])

    def record_attempt(
        self, flow_run_id: str, attempt: int, *, create: dict[str, Any],
        update_values: dict[str, Any] | None = None, overwrite_final: bool = True,
    ) -> Attempt:
        sql, params = upsert_attempt(
            self.dialect, flow_run_id, attempt, create=create, update_values=update_values,
            overwrite_final=overwrite_final,
        )
        self._execute(sql, params)
        found = self.find_attempt(flow_run_id, attempt)
        assert found is not None  # the upsert made or kept it
        return found

    def find_attempt(self, flow_run_id: str, attempt: int) -> Attempt | None:
        rows = self._execute(
            "SELECT id, started_at FROM job_log WHERE flow_run_id = :flow_run_id "
            "AND attempt = :attempt", {"flow_run_id": flow_run_id, "attempt": attempt},
        )
        return Attempt(rows[0][0], _read_time(rows[0][1])) if rows else None


def sqlite_path(database_url: str) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL or an in-memory database)."""
    if not database_url.startswith("sqlite"):
        return None
    path = database_url.split("///", 1)[-1]
    return Path(path) if path and path != ":memory:" else None
