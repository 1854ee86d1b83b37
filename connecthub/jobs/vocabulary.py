"""The words every layer shares about jobs and their runs.

Statuses and triggers of a JobLog, the collision strategies of a job, the job id pattern, and
the names ConnectHub and Prefect agree on: the generic flow's name, the tag of every ConnectHub
deployment and the flow-run tag that carries a run's trigger. The core, the flow and the
deployment code all read them from here, so none of them imports another for a constant.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable

FLOW_NAME = "connecthub-execute-job"
# Every deployment ConnectHub makes carries this tag; a sync deletes only tagged ones.
BASE_TAG = "connecthub"
# A run started by ConnectHub (run now, retry) names its trigger in a flow-run tag, never in a
# parameter: parameters are the flow's inputs and show in the Prefect UI's "Custom run".
TRIGGER_TAG_PREFIX = "connecthub.trigger:"
JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


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
