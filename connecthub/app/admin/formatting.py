"""How the admin shows values: times, durations, JSON, status badges, links to the Prefect UI,
and the cells of the Job list (actions, next run, sync state) built as escaped Markup."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup
from sqladmin.formatters import BASE_FORMATTERS
from starlette.requests import Request

from connecthub.app.admin.auth import CSRF_FORM_FIELD, csrf_token
from connecthub.app.admin.permissions import ENABLE, RUN, may
from connecthub.core.config import get_settings
from connecthub.db.models import Job
from connecthub.jobs.spec import next_fire_time
from connecthub.jobs.vocabulary import RunStatus

STATUS_BADGES = {
    RunStatus.PENDING: "bg-secondary",
    RunStatus.QUEUED: "bg-purple",
    RunStatus.RUNNING: "bg-blue",
    RunStatus.SUCCESS: "bg-green",
    RunStatus.FAILED: "bg-red",
    RunStatus.CRASHED: "bg-red",
    RunStatus.CANCELLED: "bg-yellow",
}



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


def job_list_actions(job: Job, _name: str, request: Request) -> Markup:
    """Run now and Enable/Disable of one job in the list: POST forms with the CSRF token
    (none for a role that may not use them)."""
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
    run = button("run_job_now", "Run now", "fa-play", "btn-primary")
    return (run if may(request, "job", RUN) else Markup("")) + (
        toggle if may(request, "job", ENABLE) else Markup("")
    )


def next_run(job: Job, *_: Any) -> str:
    if not job.enabled:
        return "paused"
    try:
        # In the job's own timezone, which the Timezone column shows.
        return next_fire_time(job.cron_expr, job.timezone).strftime("%Y-%m-%d %H:%M")
    except Exception:  # a row written around the validation; the list must still render
        return "invalid schedule"


def sync_state(job: Job, *_: Any) -> Markup:
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


def secret_state(job: Job, *_: Any) -> str:
    return "stored, encrypted (never shown)" if job.secret_cfg else "none"
