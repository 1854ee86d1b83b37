"""The admin's Job and JobLog pages, and the operator actions on them.

`JobView` lists, searches (by the start of the id or name, case-insensitively: an index range
scan, see migration 0003), creates, edits and deletes Jobs. A save goes through `crud.save_job`
(the one place that encrypts secrets) and then syncs the job's Prefect deployment; when Prefect is
unreachable the save stands and a warning says so. Run now, Enable and Disable are POST forms
carrying the session's CSRF token; deleting a job also deletes its deployment. "Run with
params" (`job_run.html`) opens the job's params in a form (the plugin's typed fields, or JSON)
to run once with changes; the run records them as its snapshot_params.

`JobLogView` is read-only: newest first, filtered by job and status, with its page count capped
at `JOBLOG_COUNT_CAP` (10,000) rows so that a list page stays fast at millions of rows. Its
details page (`joblog_details.html`) offers Retry and Retry with current config, as POST forms
with the CSRF token, and links the run in the Prefect UI.

Saves, deletes, Enable and Disable go through `app.job_changes`, the code path the REST API
shares: database errors are shown as a short message of its own, never with SQL or parameters
(which can include a Fernet token).
"""

from __future__ import annotations

import builtins
import logging
from typing import Any

from markupsafe import Markup
from sqladmin import ModelView, expose
from sqladmin.flash import Flash, FlashLevel
from sqladmin.pagination import Pagination
from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import defer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from wtforms import Form

from connecthub.app import job_changes
from connecthub.app.actors import request_actor
from connecthub.app.admin import formatting, queries
from connecthub.app.admin.auth import require_csrf
from connecthub.app.admin.formatting import (
    STATUS_BADGES,
    TYPE_FORMATTERS,
    deployment_url,
    flow_run_url,
    format_duration,
    format_json,
    format_time,
    status_badge,
)
from connecthub.app.admin.forms import JobEditForm, JobForm, RunParamsForm, build_spec
from connecthub.app.admin.permissions import ENABLE, RETRY, RUN, require
from connecthub.db import crud
from connecthub.db.models import Job, JobLog
from connecthub.jobs.spec import JOB_FIELDS, JobSpec
from connecthub.jobs.vocabulary import RunStatus
from deployments import runs
from deployments.client import EngineError

logger = logging.getLogger(__name__)

JOBLOG_COUNT_CAP = 10_000


class AdminError(ValueError):
    """A failed save or delete; SQLAdmin shows its message on the page."""


# --- links and formatting ------------------------------------------------------------------



def notify(request: Request, level: FlashLevel, message: str) -> None:
    """Show `message` on the next page the operator opens."""
    Flash.flash(request, message, level)
    # SQLAdmin appends to a list already in the session, a change Starlette's session does not
    # see when an earlier message is still unread: mark the session changed explicitly.
    request.session.update()


def _redirect(url: Any) -> RedirectResponse:
    return RedirectResponse(str(url), status_code=303)


class AddressIds:
    """An id in the address that cannot exist (not a number, out of range, a NUL) is a 404;
    and no column is ever served as a file (SQLAdmin would serve the file a value names)."""

    def _stmt_by_identifier(self, identifier: str) -> Select:
        if "\x00" in identifier:
            raise HTTPException(status_code=404)
        try:
            return super()._stmt_by_identifier(identifier)  # type: ignore[misc]
        except ValueError:
            raise HTTPException(status_code=404) from None

    async def get_object_filepath(self, identifier: str, column_name: str) -> Any:
        raise HTTPException(status_code=404)




class JobView(AddressIds, ModelView, model=Job):
    name = "Job"
    name_plural = "Jobs"
    icon = "fa-solid fa-gears"

    # The action buttons come first, next to SQLAdmin's view/edit/delete icons, so they stay
    # on screen when the table is wider than the window.
    column_list = [
        "actions", Job.id, Job.name, Job.cron_expr, Job.timezone, Job.enabled,
        "last_status", "next_run", "sync_state",
    ]
    column_labels = {
        # A job field is labelled as its form field is.
        **{getattr(Job, field.name): field.label.text for field in JobForm()},
        "last_status": "Last run",
        "next_run": "Next run",
        "sync_state": "Prefect",
        "actions": "",
        Job.created_at: "Created",
        Job.updated_at: "Updated",
        Job.deployment_id: "Prefect deployment",
        Job.synced_at: "Synced",
        Job.sync_error: "Sync error",
    }
    column_formatters = {
        "last_status": lambda job, _name, request: status_badge(
            request.state.last_status.get(job.id)
        ),
        "next_run": formatting.next_run,
        "sync_state": formatting.sync_state,
        "actions": formatting.job_list_actions,
    }
    # Search is a prefix of the id or the name (see `search_query`), not SQLAdmin's full-scan
    # ILIKE '%term%'; listing the columns is what shows the search box.
    column_searchable_list = [Job.id, Job.name]
    column_sortable_list = [Job.id, Job.name, Job.enabled]
    column_default_sort = [(Job.id, False)]
    column_details_list = [
        *(getattr(Job, name) for name in JOB_FIELDS),
        Job.created_at, Job.updated_at, Job.deployment_id, Job.synced_at, Job.sync_error,
    ]
    column_formatters_detail = {
        Job.secret_cfg: formatting.secret_state,
        Job.tags: lambda job, _name: ", ".join(job.tags or []),
        Job.public_cfg: lambda job, _name: Markup("<pre class='m-0'>{}</pre>").format(
            format_json(job.public_cfg)
        ),
    }
    column_type_formatters = TYPE_FORMATTERS
    can_export = False
    form_create_rules = list(JOB_FIELDS)
    form_edit_rules = [name for name in JOB_FIELDS if name != "id"]
    list_template = "job_list.html"
    details_template = "job_details.html"
    create_template = "job_create.html"
    edit_template = "job_edit.html"

    def search_placeholder(self) -> str:
        return "start of id or name"

    def search_query(self, stmt: Select, term: str) -> Select:
        prefix = term.strip()
        if not prefix:
            return stmt
        return stmt.where(
            or_(crud.prefix_match(Job.id, prefix), crud.prefix_match(Job.name, prefix))
        )

    async def scaffold_form(self, rules: builtins.list[str] | None = None) -> type[Form]:
        # SQLAdmin asks for the create form with the create rules and the edit form with the
        # edit rules; only the create form lets the operator type the id.
        return JobForm if rules and "id" in rules else JobEditForm

    async def get_form_data_for_edit(self, obj: Job) -> dict[str, Any]:
        data = await super().get_form_data_for_edit(obj)
        data.pop("secret_cfg", None)  # a Fernet token: never goes into a page
        return data

    async def list(self, request: Request) -> Pagination:
        pagination = await super().list(request)
        job_ids = [job.id for job in pagination.rows]
        request.state.last_status = await run_in_threadpool(queries.last_statuses, job_ids)
        return pagination

    async def details_context(self, request: Request) -> dict[str, Any]:
        return {"deployment_url": deployment_url}

    async def edit_context(self, request: Request) -> dict[str, Any]:
        return {"job_id": request.path_params["pk"]}

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Job:
        spec = build_spec(data)  # the form validated it; this cannot fail differently now
        job = await self._save(request, spec, new=True)
        await self._sync(request, job.id, saved="created")
        return job

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Job:
        if data.get("id") != pk:
            raise AdminError(job_changes.ID_CHANGE)
        job = await self._save(request, build_spec(data), new=False)
        await self._sync(request, job.id, saved="saved")
        return job

    async def _save(self, request: Request, spec: JobSpec, *, new: bool) -> Job:
        try:
            return await run_in_threadpool(
                lambda: job_changes.save(spec, request_actor(request), new=new)
            )
        except job_changes.JobChangeError as error:
            raise AdminError(str(error)) from None

    async def _sync(self, request: Request, job_id: str, saved: str) -> None:
        outcome = await run_in_threadpool(job_changes.sync, job_id)
        if outcome.error:
            notify(
                request,
                FlashLevel.warning,
                f"Job '{job_id}' {saved}, but its Prefect deployment is not updated yet: "
                f"{outcome.error}",
            )
        else:
            notify(request, FlashLevel.success, f"Job '{job_id}' {saved} and deployed to Prefect.")

    async def delete_model(self, request: Request, pk: Any) -> None:
        job_id = str(pk)
        try:
            deployment_id = await run_in_threadpool(
                job_changes.delete, job_id, request_actor(request)
            )
        except job_changes.JobChangeError as error:
            raise AdminError(str(error)) from None
        error_message = await run_in_threadpool(
            job_changes.remove_deployment, job_id, deployment_id
        )
        if error_message:
            notify(
                request,
                FlashLevel.warning,
                f"Job '{job_id}' deleted; its Prefect deployment is not deleted yet: "
                f"{error_message}",
            )
        else:
            notify(
                request, FlashLevel.success, f"Job '{job_id}' and its Prefect deployment deleted."
            )

    def _back(self, request: Request, form_value: Any, job_id: str) -> RedirectResponse:
        if form_value == "details":
            return _redirect(request.url_for("admin:details", identity=self.identity, pk=job_id))
        return _redirect(request.url_for("admin:list", identity=self.identity))

    @expose("/run/{pk}", methods=["POST"])
    async def run_job_now(self, request: Request) -> Response:
        require(self, request, RUN)
        form = await require_csrf(request)
        job_id = request.path_params["pk"]
        try:
            log = await run_in_threadpool(runs.run_now, job_id)
        except EngineError as error:
            notify(request, FlashLevel.error, f"Job '{job_id}' did not start: {error}")
            return self._back(request, form.get("back_to"), job_id)
        await run_in_threadpool(
            job_changes.record_run, request_actor(request), job_id, log.id, params=False
        )
        notify(request, FlashLevel.success, f"Job '{job_id}' started as JobLog #{log.id}.")
        return _redirect(request.url_for("admin:details", identity="job-log", pk=log.id))

    @expose("/run-with-params/{pk}", methods=["GET", "POST"])
    async def run_with_params(self, request: Request) -> Response:
        require(self, request, RUN)
        job_id = request.path_params["pk"]
        job = await run_in_threadpool(queries.find_job, job_id)
        if job is None:
            raise HTTPException(status_code=404)
        error = None
        if request.method == "GET":
            form = RunParamsForm(job.handler_path, params=job.public_cfg)
        else:
            form = RunParamsForm(job.handler_path, formdata=await require_csrf(request))
            if form.validate():
                try:
                    log = await run_in_threadpool(runs.run_now, job_id, form.run_params)
                except EngineError as engine_error:
                    error = f"Job '{job_id}' did not start: {engine_error}"
                else:
                    await run_in_threadpool(
                        job_changes.record_run, request_actor(request), job_id, log.id,
                        params=True,
                    )
                    notify(
                        request, FlashLevel.success,
                        f"Job '{job_id}' started with these params as JobLog #{log.id}.",
                    )
                    return _redirect(
                        request.url_for("admin:details", identity="job-log", pk=log.id)
                    )
        return await self.templates.TemplateResponse(
            request, "job_run.html",
            {"model_view": self, "job": job, "form": form, "error": error},
            status_code=200 if request.method == "GET" else 400,
        )

    @expose("/enable/{pk}", methods=["POST"])
    async def enable_job(self, request: Request) -> Response:
        return await self._set_enabled(request, enabled=True)

    @expose("/disable/{pk}", methods=["POST"])
    async def disable_job(self, request: Request) -> Response:
        return await self._set_enabled(request, enabled=False)

    async def _set_enabled(self, request: Request, enabled: bool) -> Response:
        require(self, request, ENABLE)
        form = await require_csrf(request)
        job_id = request.path_params["pk"]
        try:
            await run_in_threadpool(
                job_changes.set_enabled, job_id, enabled, request_actor(request)
            )
        except job_changes.JobChangeError as error:
            notify(request, FlashLevel.error, str(error))
            if error.status == 404:
                return _redirect(request.url_for("admin:list", identity=self.identity))
            return self._back(request, form.get("back_to"), job_id)
        await self._sync(request, job_id, saved="enabled" if enabled else "disabled")
        return self._back(request, form.get("back_to"), job_id)


class JobLogView(AddressIds, ModelView, model=JobLog):
    name = "Job log"
    name_plural = "Job logs"
    icon = "fa-solid fa-list-check"

    can_create = False
    can_edit = False
    can_delete = False
    can_export = False
    count_cap = JOBLOG_COUNT_CAP

    column_list = [
        JobLog.id, JobLog.job_id, JobLog.status, JobLog.trigger, JobLog.retry_of,
        JobLog.created_at, JobLog.duration_ms,
    ]
    column_labels = {
        JobLog.id: "Id",
        JobLog.job_id: "Job",
        JobLog.status: "Status",
        JobLog.trigger: "Trigger",
        JobLog.retry_of: "Retry of",
        JobLog.created_at: "Created (UTC)",
        JobLog.duration_ms: "Took",
    }
    column_formatters = {
        JobLog.status: lambda log, _name: status_badge(log.status),
        JobLog.duration_ms: lambda log, _name: format_duration(log.duration_ms),
        JobLog.retry_of: lambda log, _name: f"#{log.retry_of}" if log.retry_of else "",
        JobLog.trigger: lambda log, _name: (
            log.trigger if log.attempt == 1 else f"{log.trigger}, attempt {log.attempt}"
        ),
        JobLog.created_at: lambda log, _name: format_time(log.created_at)[:16],
    }
    column_type_formatters = TYPE_FORMATTERS
    column_sortable_list = [JobLog.id]
    column_default_sort = [(JobLog.id, True)]
    column_filters = [queries.JobFilter(), queries.StatusFilter()]
    # Search is an exact job id (an indexed lookup), not SQLAdmin's full-scan ILIKE.
    column_searchable_list = [JobLog.job_id]
    list_template = "joblog_list.html"
    details_template = "joblog_details.html"

    def search_placeholder(self) -> str:
        return "exact job id"

    def search_query(self, stmt: Select, term: str) -> Select:
        return stmt.where(JobLog.job_id == term.strip())

    def list_query(self, request: Request) -> Select:
        # The list never shows these, and they can be large.
        return select(JobLog).options(
            defer(JobLog.snapshot_params), defer(JobLog.result),
            defer(JobLog.error), defer(JobLog.traceback),
        )

    async def count(self, request: Request, stmt: Select | None = None) -> int:
        rows = self.list_query(request) if stmt is None else queries.counted_rows(stmt)
        if rows is None:
            return await super().count(request, stmt)
        capped = select(func.count()).select_from(
            rows.order_by(None).limit(self.count_cap + 1).subquery()
        )
        count = (await self._run_query(capped))[0]
        return queries.AtLeast(self.count_cap) if count > self.count_cap else count

    async def details_context(self, request: Request) -> dict[str, Any]:
        try:
            log_id = int(request.path_params["pk"])
        except ValueError:
            raise HTTPException(status_code=404) from None
        return {
            "job": await run_in_threadpool(queries.job_of_log, log_id),
            "flow_run_url": flow_run_url,
            "format_json": format_json,
            "format_time": format_time,
            "format_duration": format_duration,
            "status_badge": status_badge,
            "is_final": lambda status: status in STATUS_BADGES and RunStatus(status).is_final,
        }

    @expose("/retry/{pk}", methods=["POST"])
    async def retry_execution(self, request: Request) -> Response:
        require(self, request, RETRY)
        form = await require_csrf(request)
        try:
            log_id = int(request.path_params["pk"])
        except ValueError:
            raise HTTPException(status_code=404) from None
        use = form.get("use")
        if use not in ("snapshot", "current"):
            raise HTTPException(status_code=400, detail="Unknown retry: use snapshot or current.")
        try:
            new_log = await run_in_threadpool(runs.retry, log_id, use)
        except EngineError as error:
            notify(request, FlashLevel.error, f"JobLog #{log_id} was not retried: {error}")
            return _redirect(request.url_for("admin:details", identity=self.identity, pk=log_id))
        await run_in_threadpool(
            job_changes.record_retry, request_actor(request), log_id, use, new_log.id
        )
        what = "its own params" if use == "snapshot" else "the job's current config"
        notify(
            request,
            FlashLevel.success,
            f"Retrying JobLog #{log_id} with {what}: this is JobLog #{new_log.id}.",
        )
        return _redirect(
            request.url_for("admin:details", identity=self.identity, pk=new_log.id)
        )
