"""/jobs: list (paging, prefix search), get, create, replace, patch, delete, enable, disable,
and start a run.

Bodies are validated by `JobSpec` and saved through `app.job_changes`, the code path the admin
uses, so the API accepts and refuses exactly what the admin does, with the same messages.
Secrets are write-only: `secret_cfg` in a body sets them (absent keeps them, {} removes them),
and no answer ever holds them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from connecthub.app import job_changes
from connecthub.app.actors import request_actor
from connecthub.app.api.deps import Admin, Operator, Viewer
from connecthub.app.api.errors import validation_error
from connecthub.app.api.runs import start_run
from connecthub.app.api.schemas import (
    Changed,
    JobOut,
    JobPage,
    RunRequest,
    Started,
    job_spec_schema,
    json_body,
)
from connecthub.db import crud
from connecthub.db.engine import session_scope
from connecthub.db.models import Job
from connecthub.jobs.files import export_job
from connecthub.jobs.spec import JobSpec, JobSpecFieldError, field_errors

router = APIRouter(prefix="/jobs", tags=["jobs"])
JobId = Annotated[str, "the job's id"]


def _job_or_404(job_id: str) -> Job:
    with session_scope() as session:
        job = session.get(Job, job_id) if len(job_id) <= 200 and "\x00" not in job_id else None
        if job is None:
            raise HTTPException(status_code=404, detail=f"No job '{job_id}'.")
        session.expunge(job)
        return job


def _spec(body: dict[str, Any]) -> JobSpec | JSONResponse:
    try:
        return JobSpec.model_validate(body)
    except (ValidationError, JobSpecFieldError) as error:
        return validation_error(field_errors(error))


async def _save(request: Request, spec: JobSpec, *, new: bool) -> Changed:
    actor = request_actor(request)
    try:
        job = await run_in_threadpool(lambda: job_changes.save(spec, actor, new=new))
    except job_changes.JobChangeError as error:
        raise HTTPException(status_code=error.status, detail=str(error)) from None
    synced = await run_in_threadpool(job_changes.sync, job.id)
    return Changed(job=JobOut.of(await run_in_threadpool(_job_or_404, job.id)),
                   sync_error=synced.error)


def _page(query: str, limit: int, offset: int) -> JobPage:
    with session_scope() as session:
        jobs, total = crud.search_jobs(session, query, limit=limit, offset=offset)
        return JobPage(items=[JobOut.of(job) for job in jobs], total=total, limit=limit,
                       offset=offset)


@router.get("", response_model=JobPage, summary="List jobs")
async def list_jobs(
    _user: Viewer,
    q: Annotated[str, Query(max_length=200, description="Start of the id or name.")] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> JobPage:
    return await run_in_threadpool(_page, q.replace("\x00", ""), limit, offset)


@router.get("/{job_id}", response_model=JobOut, summary="Get a job")
async def get_job(job_id: JobId, _user: Viewer) -> JobOut:
    return JobOut.of(await run_in_threadpool(_job_or_404, job_id))


@router.post("", status_code=201, response_model=Changed, summary="Create a job",
             openapi_extra=json_body(job_spec_schema()))
async def create_job(_user: Admin, request: Request,
                     body: Annotated[dict[str, Any], Body()]) -> Any:
    spec = _spec(body)
    if isinstance(spec, JSONResponse):
        return spec
    return await _save(request, spec, new=True)


@router.put("/{job_id}", response_model=Changed, summary="Replace a job",
            openapi_extra=json_body(job_spec_schema()))
async def replace_job(job_id: JobId, _user: Admin, request: Request,
                      body: Annotated[dict[str, Any], Body()]) -> Any:
    await run_in_threadpool(_job_or_404, job_id)
    if body.get("id", job_id) != job_id:
        return validation_error({"id": job_changes.ID_CHANGE})
    spec = _spec({**body, "id": job_id})
    if isinstance(spec, JSONResponse):
        return spec
    return await _save(request, spec, new=False)


@router.patch("/{job_id}", response_model=Changed, summary="Change some fields of a job",
              openapi_extra=json_body(job_spec_schema(partial=True)))
async def patch_job(job_id: JobId, _user: Admin, request: Request,
                    body: Annotated[dict[str, Any], Body()]) -> Any:
    job = await run_in_threadpool(_job_or_404, job_id)
    if body.get("id", job_id) != job_id:
        return validation_error({"id": job_changes.ID_CHANGE})
    spec = _spec({**export_job(job), **body, "id": job_id})
    if isinstance(spec, JSONResponse):
        return spec
    return await _save(request, spec, new=False)


@router.delete("/{job_id}", status_code=204, summary="Delete a job (its JobLog history stays)")
async def delete_job(job_id: JobId, _user: Admin, request: Request) -> Response:
    try:
        deployment_id = await run_in_threadpool(
            job_changes.delete, job_id, request_actor(request)
        )
    except job_changes.JobChangeError as error:
        raise HTTPException(status_code=error.status, detail=str(error)) from None
    await run_in_threadpool(job_changes.remove_deployment, job_id, deployment_id)
    return Response(status_code=204)


async def _set_enabled(request: Request, job_id: str, enabled: bool) -> Changed:
    try:
        await run_in_threadpool(
            job_changes.set_enabled, job_id, enabled, request_actor(request)
        )
    except job_changes.JobChangeError as error:
        raise HTTPException(status_code=error.status, detail=str(error)) from None
    synced = await run_in_threadpool(job_changes.sync, job_id)
    return Changed(job=JobOut.of(await run_in_threadpool(_job_or_404, job_id)),
                   sync_error=synced.error)


@router.post("/{job_id}/enable", response_model=Changed, summary="Enable a job")
async def enable_job(job_id: JobId, _user: Operator, request: Request) -> Changed:
    return await _set_enabled(request, job_id, True)


@router.post("/{job_id}/disable", response_model=Changed, summary="Disable a job")
async def disable_job(job_id: JobId, _user: Operator, request: Request) -> Changed:
    return await _set_enabled(request, job_id, False)


@router.post("/{job_id}/runs", status_code=202, response_model=Started,
             summary="Start a run now (optionally with other params)")
async def run_job(job_id: JobId, _user: Operator, request: Request,
                  body: Annotated[RunRequest | None, Body()] = None) -> Started:
    # Checked here, so that a job that does not exist is a 404 before anything else.
    await run_in_threadpool(_job_or_404, job_id)
    return await start_run(request, job_id, body.params if body else None)
