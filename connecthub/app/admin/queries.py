"""The admin's database work: prefix search, the saves and deletes its views run in a thread,
the stored secrets an edit merges typed ones into, the JobLog list's filters and its capped
count."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

from sqlalchemy import Select, select
from starlette.requests import Request

from connecthub.app.admin.formatting import STATUS_BADGES
from connecthub.db import crud
from connecthub.db.engine import session_scope
from connecthub.db.models import Job, JobLog
from connecthub.jobs.vocabulary import RunStatus
from connecthub.security.fernet import decrypt_json

JOB_FILTER_MAX_LISTED = 200


# --- database work (run in a thread) ----------------------------------------------------


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
