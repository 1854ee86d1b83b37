"""/logs: the JobLog, filtered and paged by cursor, one execution whole, and its retry; and
`start_run`, the run of /jobs/{id}/runs. Runs and retries go through `deployments.runs`, as the
admin's and the CLI's do.

The list is newest first; `cursor` is the id of the last entry of the previous page, so a page
is one range read of an index however deep the paging goes, and entries added meanwhile do not
shift the pages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import defer
from starlette.concurrency import run_in_threadpool

from connecthub.app import job_changes
from connecthub.app.actors import request_actor
from connecthub.app.api.deps import Operator, Viewer
from connecthub.app.api.schemas import LogDetail, LogOut, LogPage, RetryRequest, Started
from connecthub.db.engine import session_scope
from connecthub.db.models import JobLog
from connecthub.jobs.vocabulary import RunStatus
from deployments import runs
from deployments.errors import EngineError, PrefectUnavailableError

router = APIRouter(prefix="/logs", tags=["logs"])
MAX_ID = 2**63 - 1


def _page(job_id: str | None, status: RunStatus | None, since: datetime | None,
          until: datetime | None, cursor: int | None, limit: int) -> LogPage:
    query = select(JobLog).options(
        defer(JobLog.snapshot_params), defer(JobLog.result), defer(JobLog.traceback)
    ).order_by(JobLog.id.desc()).limit(limit + 1)
    if job_id:
        query = query.where(JobLog.job_id == job_id)
    if status:
        query = query.where(JobLog.status == status.value)
    if since:
        query = query.where(JobLog.created_at >= since)
    if until:
        query = query.where(JobLog.created_at < until)
    if cursor:
        query = query.where(JobLog.id < cursor)
    with session_scope() as session:
        rows = list(session.scalars(query))
        items = [LogOut.of(row) for row in rows[:limit]]
    return LogPage(items=items, next_cursor=items[-1].id if len(rows) > limit else None)


@router.get("", response_model=LogPage, summary="List JobLog entries, newest first")
async def list_logs(
    _user: Viewer,
    job_id: Annotated[str | None, Query(max_length=200)] = None,
    status: RunStatus | None = None,
    since: Annotated[datetime | None, Query(description="Created at or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Created before (ISO 8601).")] = None,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> LogPage:
    # A NUL cannot be stored in a job id (PostgreSQL refuses it in a query): it matches nothing.
    if job_id is not None and "\x00" in job_id:
        return LogPage(items=[], next_cursor=None)
    return await run_in_threadpool(_page, job_id, status, since, until, cursor, limit)


def _log_or_404(log_id: int) -> LogDetail:
    with session_scope() as session:
        log = session.get(JobLog, log_id) if 0 < log_id <= MAX_ID else None
        if log is None:
            raise HTTPException(status_code=404, detail=f"No JobLog #{log_id}.")
        return LogDetail.of(log)


@router.get("/{log_id}", response_model=LogDetail,
            summary="One execution whole: params, result, error, traceback")
async def get_log(log_id: int, _user: Viewer) -> LogDetail:
    return await run_in_threadpool(_log_or_404, log_id)


def _engine_error(error: EngineError) -> HTTPException:
    status = 503 if isinstance(error, PrefectUnavailableError) else 409
    return HTTPException(status_code=status, detail=str(error))


@router.post("/{log_id}/retry", status_code=202, response_model=Started,
             summary="Rerun an execution with its own params (snapshot) or the current config")
async def retry_log(log_id: int, _user: Operator, request: Request,
                    body: Annotated[RetryRequest | None, Body()] = None) -> Started:
    await run_in_threadpool(_log_or_404, log_id)
    use = body.use if body else "snapshot"
    try:
        log = await run_in_threadpool(runs.retry, log_id, use)
    except EngineError as error:
        raise _engine_error(error) from None
    await run_in_threadpool(
        job_changes.record_retry, request_actor(request), log_id, use, log.id
    )
    return Started(log_id=log.id, status=log.status)


async def start_run(request: Request, job_id: str, params: dict[str, Any] | None) -> Started:
    try:
        log = await run_in_threadpool(runs.run_now, job_id, params)
    except EngineError as error:
        raise _engine_error(error) from None
    await run_in_threadpool(
        job_changes.record_run, request_actor(request), job_id, log.id,
        params=params is not None,
    )
    return Started(log_id=log.id, status=log.status)
