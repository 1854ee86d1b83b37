"""The admin's Job and JobLog pages, and the operator actions on them.

`JobView` lists, searches (by the start of the id or name, case-insensitively: an index range
scan, see migration 0003), creates, edits and deletes Jobs. A save goes through `crud.save_job`
(the one place that encrypts secrets) and then syncs the job's Prefect deployment; when Prefect is
unreachable the save stands and a warning says so. Run now, Enable and Disable are POST forms
carrying the session's CSRF token; deleting a job also deletes its deployment.

`JobLogView` is read-only: newest first, filtered by job and status, with its page count capped
at `JOBLOG_COUNT_CAP` (10,000) rows so that a list page stays fast at millions of rows. Its
details page (`joblog_details.html`) offers Retry and Retry with current config, as POST forms
with the CSRF token, and links the run in the Prefect UI.

Database errors are shown as a short message of ours, never with SQL or parameters (which can
include a Fernet token).
"""

from __future__ import annotations

import builtins
import json
import logging
import string
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup
from sqladmin import ModelView, expose
from sqladmin.flash import Flash, FlashLevel
from sqladmin.formatters import BASE_FORMATTERS
from sqladmin.pagination import Pagination
from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import defer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from wtforms import Form

from connecthub.admin.auth import CSRF_FORM_FIELD, csrf_token, require_csrf
from connecthub.admin.forms import SPEC_FIELDS, JobEditForm, JobForm, build_spec
from connecthub.core.config import get_settings
from connecthub.db import crud
from connecthub.db.engine import get_engine, session_scope
from connecthub.db.models import Job, JobLog, RunStatus, utcnow
from connecthub.jobs.spec import JobSpec, next_fire_time
from deployments import runs, sync
from deployments.client import EngineError

logger = logging.getLogger(__name__)

JOBLOG_COUNT_CAP = 10_000
JOB_FILTER_MAX_LISTED = 200
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
STATUS_BADGES = {
    RunStatus.PENDING: "bg-secondary",
    RunStatus.RUNNING: "bg-blue",
    RunStatus.SUCCESS: "bg-green",
    RunStatus.FAILED: "bg-red",
    RunStatus.CRASHED: "bg-red",
    RunStatus.CANCELLED: "bg-yellow",
}


class AdminError(ValueError):
    """A failed save or delete; SQLAdmin shows its message on the page."""


# --- links and formatting ------------------------------------------------------------------


def flow_run_url(flow_run_id: str | None) -> str | None:
    ui_url = get_settings().ui_url
    if not (ui_url and flow_run_id):
        return None
    return f"{ui_url}/runs/flow-run/{flow_run_id}"


def deployment_url(deployment_id: str | None) -> str | None:
    ui_url = get_settings().ui_url
    if not (ui_url and deployment_id):
        return None
    return f"{ui_url}/deployments/deployment/{deployment_id}"


def as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite returns naive datetimes; ConnectHub stores UTC
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_time(value: datetime | None) -> str:
    value = as_utc(value)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def format_duration(duration_ms: int | None) -> str:
    if duration_ms is None:
        return ""
    if duration_ms < 1000:
        return f"{duration_ms} ms"
    if duration_ms < 120_000:
        return f"{duration_ms / 1000:.1f} s"
    return f"{duration_ms / 60_000:.1f} min"


def format_json(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def status_badge(status: str | None) -> Markup:
    if not status:
        return Markup('<span class="text-muted">never run</span>')
    css = STATUS_BADGES.get(status, "bg-secondary")
    return Markup('<span class="badge {} text-white">{}</span>').format(css, status)


TYPE_FORMATTERS = {**BASE_FORMATTERS, datetime: format_time}


def notify(request: Request, level: FlashLevel, message: str) -> None:
    """Show `message` on the next page the operator opens."""
    Flash.flash(request, message, level)
    # SQLAdmin appends to a list already in the session, a change Starlette's session does not
    # see when an earlier message is still unread: mark the session changed explicitly.
    request.session.update()


def _redirect(url: Any) -> RedirectResponse:
    return RedirectResponse(str(url), status_code=303)


def _log_db_error(action: str, job_id: str, error: SQLAlchemyError) -> None:
    # The statement and its parameters may hold a Fernet token: log only what kind of error.
    reason = type(getattr(error, "orig", None) or error).__name__
    logger.error("database error while %s job %s: %s", action, job_id, reason)


def _prefix_match(column: Any, prefix: str) -> ColumnElement[bool]:
    """`column` starts with `prefix`, case-insensitively and every character taken literally,
    written so that the index on `lower(column)` (migration 0003) serves it."""
    if get_engine().dialect.name == "sqlite":
        # SQLite serves LIKE from an index only under a NOCASE collation, but GLOB (which is
        # case-sensitive) from the index on lower(column). Its lower() folds ASCII letters only:
        # fold the term the same way. GLOB has no escape character: [c] matches c literally.
        lowered = prefix.translate(_ASCII_LOWER)
        pattern = "".join(f"[{char}]" if char in "*?[" else char for char in lowered) + "*"
        return func.lower(column).op("GLOB", is_comparison=True)(pattern)
    # PostgreSQL folds the pattern with the column's lower(), and plans it as a constant: a
    # range scan of the text_pattern_ops index.
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(column).like(func.lower(escaped + "%"), escape="\\")


# --- database work (run in a thread) ----------------------------------------------------


def _insert_job(spec: JobSpec) -> Job:
    with session_scope() as session:
        return crud.save_job(session, spec, must_be_new=True)


def _update_job(spec: JobSpec) -> Job:
    with session_scope() as session:
        crud.get_job(session, spec.id)
        return crud.save_job(session, spec)


def _set_enabled(job_id: str, enabled: bool) -> None:
    with session_scope() as session:
        job = crud.get_job(session, job_id)
        if job.enabled != enabled:
            job.enabled = enabled
            job.updated_at = utcnow()


def _delete_job(job_id: str) -> str | None:
    """Delete the row; returns the deployment id it had."""
    with session_scope() as session:
        deployment_id = crud.get_job(session, job_id).deployment_id
        crud.delete_job(session, job_id)
    return deployment_id


def _last_statuses(job_ids: builtins.list[str]) -> dict[str, str]:
    if not job_ids:
        return {}
    with session_scope() as session:
        return crud.last_status_by_job(session, job_ids)


def _job_of_log(log_id: int) -> Job | None:
    with session_scope() as session:
        job_id = session.scalar(select(JobLog.job_id).where(JobLog.id == log_id))
        return session.get(Job, job_id) if job_id is not None else None


# --- Job --------------------------------------------------------------------------------


def _job_list_actions(job: Job, _name: str, request: Request) -> Markup:
    """Run now and Enable/Disable of one job in the list: POST forms with the CSRF token."""
    token = csrf_token(request)

    def button(route: str, title: str, icon: str, css: str) -> Markup:
        return Markup(
            '<form method="post" action="{}" class="d-inline">'
            '<input type="hidden" name="{}" value="{}">'
            '<input type="hidden" name="back_to" value="list">'
            '<button type="submit" class="btn btn-sm btn-icon {}" title="{}" aria-label="{}">'
            '<i class="fa-solid {}"></i></button></form> '
        ).format(
            request.url_for(f"admin:view-job-{route}", pk=job.id),
            CSRF_FORM_FIELD, token, css, title, title, icon,
        )

    toggle = (
        button("disable_job", "Disable", "fa-pause", "btn-outline-secondary")
        if job.enabled
        else button("enable_job", "Enable", "fa-power-off", "btn-outline-success")
    )
    return button("run_job_now", "Run now", "fa-play", "btn-primary") + toggle


def _next_run(job: Job, *_: Any) -> str:
    if not job.enabled:
        return "paused"
    try:
        # In the job's own timezone, which the Timezone column shows.
        return next_fire_time(job.cron_expr, job.timezone).strftime("%Y-%m-%d %H:%M")
    except Exception:  # a row written around the validation; the list must still render
        return "invalid schedule"


def _sync_state(job: Job, *_: Any) -> Markup:
    if job.sync_error:
        return Markup('<span class="badge bg-red text-white" title="{}">not synced</span>').format(
            job.sync_error
        )
    synced_at, updated_at = as_utc(job.synced_at), as_utc(job.updated_at)
    if job.deployment_id and synced_at and updated_at and synced_at >= updated_at:
        link = deployment_url(job.deployment_id)
        if link:
            return Markup('<a href="{}" target="_blank" rel="noopener">synced</a>').format(link)
        return Markup("synced")
    return Markup('<span class="text-muted">pending</span>')


def _secret_state(job: Job, *_: Any) -> str:
    return "stored, encrypted (never shown)" if job.secret_cfg else "none"


class _AddressIds:
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


class JobView(_AddressIds, ModelView, model=Job):
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
        Job.id: "Id",
        Job.name: "Name",
        Job.timezone: "Timezone",
        Job.enabled: "Enabled",
        Job.cron_expr: "Cron",
        "last_status": "Last run",
        "next_run": "Next run",
        "sync_state": "Prefect",
        "actions": "",
        Job.description: "Description",
        Job.handler_path: "Handler",
        Job.public_cfg: "Parameters (public_cfg)",
        Job.secret_cfg: "Secrets (secret_cfg)",
        Job.timeout_seconds: "Timeout (seconds)",
        Job.max_retries: "Retries",
        Job.retry_delay_seconds: "Retry delay (seconds)",
        Job.concurrency_limit: "Concurrent runs",
        Job.collision_strategy: "When a run is still going",
        Job.tags: "Tags",
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
        "next_run": _next_run,
        "sync_state": _sync_state,
        "actions": _job_list_actions,
    }
    # Search is a prefix of the id or the name (see `search_query`), not SQLAdmin's full-scan
    # ILIKE '%term%'; listing the columns is what shows the search box.
    column_searchable_list = [Job.id, Job.name]
    column_sortable_list = [Job.id, Job.name, Job.enabled]
    column_default_sort = [(Job.id, False)]
    column_details_list = [
        Job.id, Job.name, Job.description, Job.handler_path, Job.cron_expr, Job.timezone,
        Job.enabled, Job.public_cfg, Job.secret_cfg, Job.timeout_seconds, Job.max_retries,
        Job.retry_delay_seconds, Job.concurrency_limit, Job.collision_strategy, Job.tags,
        Job.created_at, Job.updated_at, Job.deployment_id, Job.synced_at, Job.sync_error,
    ]
    column_formatters_detail = {
        Job.secret_cfg: _secret_state,
        Job.tags: lambda job, _name: ", ".join(job.tags or []),
        Job.public_cfg: lambda job, _name: Markup("<pre class='m-0'>{}</pre>").format(
            format_json(job.public_cfg)
        ),
    }
    column_type_formatters = TYPE_FORMATTERS
    can_export = False
    form_create_rules = list(SPEC_FIELDS)
    form_edit_rules = [name for name in SPEC_FIELDS if name != "id"]
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
        return stmt.where(or_(_prefix_match(Job.id, prefix), _prefix_match(Job.name, prefix)))

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
        request.state.last_status = await run_in_threadpool(_last_statuses, job_ids)
        return pagination

    async def details_context(self, request: Request) -> dict[str, Any]:
        return {"deployment_url": deployment_url}

    async def edit_context(self, request: Request) -> dict[str, Any]:
        return {"job_id": request.path_params["pk"]}

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Job:
        spec = build_spec(data)  # the form validated it; this cannot fail differently now
        job = await self._save(spec, _insert_job)
        await self._sync(request, job.id, saved="created")
        return job

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Job:
        if data.get("id") != pk:
            raise AdminError("The id of a job cannot be changed: create a new job instead.")
        job = await self._save(build_spec(data), _update_job)
        await self._sync(request, job.id, saved="saved")
        return job

    async def _save(self, spec: JobSpec, save: Callable[[JobSpec], Job]) -> Job:
        try:
            return await run_in_threadpool(save, spec)
        except crud.JobExistsError:
            raise AdminError(
                f"A job with id '{spec.id}' already exists: choose another id, or edit that job."
            ) from None
        except crud.JobNotFoundError:
            raise AdminError(f"Job '{spec.id}' no longer exists: it was deleted.") from None
        except IntegrityError as error:
            _log_db_error("saving", spec.id, error)
            raise AdminError(
                "The database refused this job because it conflicts with existing data "
                "(was it created meanwhile?). Nothing was saved."
            ) from None
        except SQLAlchemyError as error:
            _log_db_error("saving", spec.id, error)
            raise AdminError(
                "The database could not save this job; nothing was saved. "
                "Try again, and check the admin's log if it persists."
            ) from None

    async def _sync(self, request: Request, job_id: str, saved: str) -> None:
        outcome = await run_in_threadpool(sync.sync_job, job_id)
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
            deployment_id = await run_in_threadpool(_delete_job, job_id)
        except crud.JobNotFoundError:
            raise AdminError(f"Job '{job_id}' was already deleted.") from None
        except SQLAlchemyError as error:
            _log_db_error("deleting", job_id, error)
            raise AdminError(f"The database could not delete job '{job_id}'.") from None
        error_message = await run_in_threadpool(sync.remove_job, job_id, deployment_id)
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
        form = await require_csrf(request)
        job_id = request.path_params["pk"]
        try:
            log = await run_in_threadpool(runs.run_now, job_id)
        except EngineError as error:
            notify(request, FlashLevel.error, f"Job '{job_id}' did not start: {error}")
            return self._back(request, form.get("back_to"), job_id)
        notify(request, FlashLevel.success, f"Job '{job_id}' started as JobLog #{log.id}.")
        return _redirect(request.url_for("admin:details", identity="job-log", pk=log.id))

    @expose("/enable/{pk}", methods=["POST"])
    async def enable_job(self, request: Request) -> Response:
        return await self._set_enabled(request, enabled=True)

    @expose("/disable/{pk}", methods=["POST"])
    async def disable_job(self, request: Request) -> Response:
        return await self._set_enabled(request, enabled=False)

    async def _set_enabled(self, request: Request, enabled: bool) -> Response:
        form = await require_csrf(request)
        job_id = request.path_params["pk"]
        try:
            await run_in_threadpool(_set_enabled, job_id, enabled)
        except crud.JobNotFoundError:
            notify(request, FlashLevel.error, f"Job '{job_id}' no longer exists.")
            return _redirect(request.url_for("admin:list", identity=self.identity))
        except SQLAlchemyError as error:
            _log_db_error("enabling" if enabled else "disabling", job_id, error)
            message = f"The database could not update job '{job_id}'; try again."
            notify(request, FlashLevel.error, message)
            return self._back(request, form.get("back_to"), job_id)
        await self._sync(request, job_id, saved="enabled" if enabled else "disabled")
        return self._back(request, form.get("back_to"), job_id)


# --- JobLog -----------------------------------------------------------------------------


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


def _counted_rows(count_stmt: Select) -> Select | None:
    """The row query inside SQLAdmin's `SELECT count(*) FROM (<rows>)`, if that is its shape."""
    froms = count_stmt.get_final_froms()
    element = getattr(froms[0], "element", None) if len(froms) == 1 else None
    return element if isinstance(element, Select) else None


class JobLogView(_AddressIds, ModelView, model=JobLog):
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
    column_filters = [JobFilter(), StatusFilter()]
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
        rows = self.list_query(request) if stmt is None else _counted_rows(stmt)
        if rows is None:
            return await super().count(request, stmt)
        capped = select(func.count()).select_from(
            rows.order_by(None).limit(self.count_cap + 1).subquery()
        )
        count = (await self._run_query(capped))[0]
        return AtLeast(self.count_cap) if count > self.count_cap else count

    async def details_context(self, request: Request) -> dict[str, Any]:
        try:
            log_id = int(request.path_params["pk"])
        except ValueError:
            raise HTTPException(status_code=404) from None
        return {
            "job": await run_in_threadpool(_job_of_log, log_id),
            "flow_run_url": flow_run_url,
            "format_json": format_json,
            "format_time": format_time,
            "format_duration": format_duration,
            "status_badge": status_badge,
            "is_final": lambda status: status in STATUS_BADGES and RunStatus(status).is_final,
        }

    @expose("/retry/{pk}", methods=["POST"])
    async def retry_execution(self, request: Request) -> Response:
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
        what = "its own params" if use == "snapshot" else "the job's current config"
        notify(
            request,
            FlashLevel.success,
            f"Retrying JobLog #{log_id} with {what}: this is JobLog #{new_log.id}.",
        )
        return _redirect(
            request.url_for("admin:details", identity=self.identity, pk=new_log.id)
        )
