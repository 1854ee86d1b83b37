"""The admin's database work: prefix search, the saves and deletes its views run in a thread,
the stored secrets an edit merges typed ones into, the JobLog list's filters and its capped
count."""

from __future__ import annotations

import builtins
import string
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from starlette.requests import Request

from connecthub.app.admin.formatting import STATUS_BADGES
from connecthub.db import crud
from connecthub.db.engine import get_engine, session_scope
from connecthub.db.models import Job, JobLog, utcnow
from connecthub.jobs.spec import JobSpec
from connecthub.jobs.vocabulary import RunStatus
from connecthub.security.fernet import decrypt_json

JOB_FILTER_MAX_LISTED = 200
ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def prefix_match(column: Any, prefix: str) -> ColumnElement[bool]:
    """`column` starts with `prefix`, case-insensitively and every character taken literally,
    written so that the index on `lower(column)` (migration 0003) serves it."""
    if get_engine().dialect.name == "sqlite":
        # SQLite serves LIKE from an index only under a NOCASE collation, but GLOB (which is
        # case-sensitive) from the index on lower(column). Its lower() folds ASCII letters only:
        # fold the term the same way. GLOB has no escape character: [c] matches c literally.
        lowered = prefix.translate(ASCII_LOWER)
        pattern = "".join(f"[{char}]" if char in "*?[" else char for char in lowered) + "*"
        return func.lower(column).op("GLOB", is_comparison=True)(pattern)
    # PostgreSQL folds the pattern with the column's lower(), and plans it as a constant: a
    # range scan of the text_pattern_ops index.
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(column).like(func.lower(escaped + "%"), escape="\\")


# --- database work (run in a thread) ----------------------------------------------------


def insert_job(spec: JobSpec) -> Job:
    with session_scope() as session:
        return crud.save_job(session, spec, must_be_new=True)


def update_job(spec: JobSpec) -> Job:
    with session_scope() as session:
        crud.get_job(session, spec.id)
        return crud.save_job(session, spec)


def find_job(job_id: str) -> Job | None:
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is not None:
            session.expunge(job)
        return job


def stored_secrets(job_id: str | None) -> dict[str, Any]:
    """The job's decrypted secrets, for an edit to merge into (in memory, never rendered)."""
    with session_scope() as session:
        job = session.get(Job, job_id) if job_id else None
        token = job.secret_cfg if job is not None else None
    return decrypt_json(token, job_id=job_id) if token else {}


def set_enabled(job_id: str, enabled: bool) -> None:
    with session_scope() as session:
        job = crud.get_job(session, job_id)
        if job.enabled != enabled:
            job.enabled = enabled
            job.updated_at = utcnow()


def delete_job(job_id: str) -> str | None:
    """Delete the row; returns the deployment id it had."""
    with session_scope() as session:
        deployment_id = crud.get_job(session, job_id).deployment_id
        crud.delete_job(session, job_id)
    return deployment_id


def last_statuses(job_ids: builtins.list[str]) -> dict[str, str]:
    if not job_ids:
        return {}
    with session_scope() as session:
        return crud.last_status_by_job(session, job_ids)


def job_of_log(log_id: int) -> Job | None:
    with session_scope() as session:
        job_id = session.scalar(select(JobLog.job_id).where(JobLog.id == log_id))
        return session.get(Job, job_id) if job_id is not None else None




class JobFilter:
    """Filter by job: lists the existing jobs; the id of a deleted job still filters its logs."""

    has_operator = False
    template = "sqladmin/filters/lookup_filter.html"
    title = "Job"
    parameter_name = "job_id"

    async def lookups(
        self, request: Request, model: Any, run_query: Callable[[Select], Any]
    ) -> builtins.list[tuple[str, str]]:
        rows = await run_query(select(Job.id).order_by(Job.id).limit(JOB_FILTER_MAX_LISTED))
        job_ids = [row[0] for row in rows]
        current = request.query_params.get(self.parameter_name)
        if current and current != "__all" and current not in job_ids:
            job_ids.append(current)
        return [("__all", "All"), *((job_id, job_id) for job_id in job_ids)]

    async def get_filtered_query(self, query: Select, value: Any, model: Any) -> Select:
        if value in (None, "", "__all"):
            return query
        return query.where(JobLog.job_id == value)


class StatusFilter:
    """Filter by run status (a fixed list: no query)."""

    has_operator = False
    template = "sqladmin/filters/lookup_filter.html"
    title = "Status"
    parameter_name = "status"

    async def lookups(
        self, request: Request, model: Any, run_query: Callable[[Select], Any]
    ) -> builtins.list[tuple[str, str]]:
        return [("__all", "All"), *((status.value, status.value) for status in RunStatus)]

    async def get_filtered_query(self, query: Select, value: Any, model: Any) -> Select:
        if value not in STATUS_BADGES:
            return query
        return query.where(JobLog.status == value)


class AtLeast(int):
    """A row count that reached the cap, shown as e.g. '10,000+'."""

    def __str__(self) -> str:
        return f"{int(self):,}+"


def counted_rows(count_stmt: Select) -> Select | None:
    """The row query inside SQLAdmin's `SELECT count(*) FROM (<rows>)`, if that is its shape."""
    froms = count_stmt.get_final_froms()
    element = getattr(froms[0], "element", None) if len(froms) == 1 else None
    return element if isinstance(element, Select) else None
