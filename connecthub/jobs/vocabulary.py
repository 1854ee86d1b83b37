"""The words every layer shares about jobs and their runs.

Statuses and triggers of a JobLog, the collision strategies of a job, the job id pattern, and
the names ConnectHub and Prefect agree on: the generic flow's name, the tag of every ConnectHub
deployment and the flow-run tag that carries a run's trigger. The core, the flow and the
deployment code all read them from here, so none of them imports another for a constant.
Also how a flow run is named (`flow_run_name`) and the admin's addresses of a job and of a JobLog
that Prefect links back to (`admin_job_url`, `admin_joblog_url`).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import quote

FLOW_NAME = "connecthub-execute-job"
# Every deployment ConnectHub makes carries this tag; a sync deletes only tagged ones.
BASE_TAG = "connecthub"
# A run started by ConnectHub (run now, retry) names its trigger in a flow-run tag, never in a
# parameter: parameters are the flow's inputs and show in the Prefect UI's "Custom run".
TRIGGER_TAG_PREFIX = "connecthub.trigger:"
JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
CHANNEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


class RunStatus(enum.StrEnum):
    PENDING = "PENDING"
    # Prefect holds the run until the job's concurrency limit frees a slot.
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self not in NON_FINAL


NON_FINAL = frozenset({RunStatus.PENDING, RunStatus.QUEUED, RunStatus.RUNNING})


class Trigger(enum.StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    RETRY = "retry"
    PREFECT_RETRY = "prefect-retry"


class CollisionStrategy(enum.StrEnum):
    """What Prefect does with a run of a job that is still running: queue it, or cancel it."""

    ENQUEUE = "ENQUEUE"
    CANCEL_NEW = "CANCEL_NEW"


def trigger_tag(trigger: Trigger) -> str:
    return f"{TRIGGER_TAG_PREFIX}{trigger.value}"


def trigger_of(
    tags: Iterable[str], *, auto_scheduled: bool, attempt: int, retry_of: int | None
) -> Trigger:
    """What started `attempt` of a flow run with these tags."""
    if attempt > 1:
        return Trigger.PREFECT_RETRY
    for tag in tags:
        if tag.startswith(TRIGGER_TAG_PREFIX):
            return Trigger(tag.removeprefix(TRIGGER_TAG_PREFIX))
    if retry_of is not None:
        return Trigger.RETRY
    return Trigger.SCHEDULE if auto_scheduled else Trigger.MANUAL


def flow_run_name(job_id: str, when: datetime, trigger: Trigger, retry_of: int | None) -> str:
    """`<job id> · <slot or start, UTC> · <trigger>`, e.g. `example.hello · 2026-12-01 20:14 ·
    schedule` or `… · retry of #41`: what a list of runs in the Prefect UI says about each."""
    started = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    how = f"retry of #{retry_of}" if trigger is Trigger.RETRY and retry_of else trigger.value
    return f"{job_id} · {started} · {how}"


def admin_job_url(admin_url: str, job_id: str) -> str:
    return f"{admin_url.rstrip('/')}/admin/job/details/{quote(job_id, safe='')}"


def admin_joblog_url(admin_url: str, log_id: int) -> str:
    return f"{admin_url.rstrip('/')}/admin/job-log/details/{log_id}"
