"""Which JobLog rows alert: the start of a failure streak, its continuation, its end.

A run's final failure is a CRASHED attempt, or a FAILED one that was the last attempt its job
allows (`attempt > max_retries`): a failed attempt Prefect retries is not one. A job's streak is
its final failures since its last SUCCESS (or since it was created). With
`alert_after_failures` N, the streak alerts once, when it reaches N (`failing:<job>:<first row of
the streak>`); with `alert_every_failure`, each further failure alerts too (`failed:<job>:<row>`);
the first SUCCESS after a streak that alerted is a recovery (`recovered:<job>:<row>`).

`evaluate` reads only rows past the cursor kept in `loop_state` (every row at or below it was
final when read), then the recent outcomes of the jobs those rows belong to; the keys make a
repeated or concurrent evaluation harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connecthub.alerts import messages
from connecthub.alerts.channels import channels_for
from connecthub.alerts.messages import AlertEvent, AlertKind
from connecthub.alerts.outbox import enqueue
from connecthub.db import loop_state
from connecthub.db.models import Job, JobLog, utcnow
from connecthub.jobs.vocabulary import NON_FINAL, RunStatus

OUTCOMES = (RunStatus.SUCCESS.value, RunStatus.FAILED.value, RunStatus.CRASHED.value)
# How many of a job's newest outcomes are read to know its streak.
STREAK_WINDOW = 500
BATCH = 5000
# A row still open after this long (a run nobody will finish) no longer holds the cursor back.
STALE_OPEN = timedelta(days=1)


@dataclass(frozen=True)
class JobAlert:
    event: AlertEvent
    channels: list[str]  # as the job names them; empty: the default channels


def final_failure(log: JobLog, max_retries: int) -> bool:
    if log.status == RunStatus.CRASHED.value:
        return True
    return log.status == RunStatus.FAILED.value and log.attempt > max_retries


def job_events(session: Session, job: Job, after_id: int, up_to_id: int) -> list[AlertEvent]:
    """The events of `job` among its rows in (after_id, up_to_id]."""
    newest = list(session.scalars(
        select(JobLog)
        .where(JobLog.job_id == job.id, JobLog.id <= up_to_id, JobLog.status.in_(OUTCOMES))
        .order_by(JobLog.id.desc())
        .limit(STREAK_WINDOW)
    ))
    threshold = job.alert_after_failures
    events: list[AlertEvent] = []
    streak: list[JobLog] = []
    for log in reversed(newest):
        new = log.id > after_id
        if log.status == RunStatus.SUCCESS.value:
            if new and len(streak) >= threshold:
                events.append(messages.recovery(log, failures=len(streak)))
            streak = []
        elif final_failure(log, job.max_retries):
            streak.append(log)
            if not new:
                continue
            if len(streak) == threshold:
                key = f"failing:{job.id}:{streak[0].id}"
                events.append(messages.failure(log, kind=AlertKind.FAILING, streak=len(streak),
                                               key=key))
            elif job.alert_every_failure and len(streak) > threshold:
                key = f"failed:{job.id}:{log.id}"
                events.append(messages.failure(log, kind=AlertKind.FAILED, streak=len(streak),
                                               key=key))
    return events


def evaluate(session: Session) -> list[JobAlert]:
    """The job alerts of the rows that became final since the last evaluation; moves the cursor.

    Runs in the caller's transaction, so the cursor moves only with the enqueued deliveries.
    """
    state = loop_state.read(session, loop_state.ALERTS_CURSOR)
    cursor = state.cursor if state is not None and state.cursor is not None else None
    if cursor is None:
        # The first evaluation looks at recent history only, not at years of it.
        newest_id = session.scalar(select(func.max(JobLog.id))) or 0
        cursor = max(newest_id - STREAK_WINDOW, 0)
    rows = session.execute(
        select(JobLog.id, JobLog.job_id, JobLog.status, JobLog.created_at)
        .where(JobLog.id > cursor)
        .order_by(JobLog.id)
        .limit(BATCH)
    ).all()
    if not rows:
        loop_state.write(session, loop_state.ALERTS_CURSOR, cursor=cursor)
        return []
    stale = utcnow() - STALE_OPEN
    open_rows = [
        row.id for row in rows if RunStatus(row.status) in NON_FINAL and row.created_at > stale
    ]
    up_to_id = rows[-1].id
    job_ids = sorted({row.job_id for row in rows if row.status in OUTCOMES})
    alerts: list[JobAlert] = []
    for job in session.scalars(select(Job).where(Job.id.in_(job_ids))):
        for event in job_events(session, job, cursor, up_to_id):
            alerts.append(JobAlert(event, list(job.alerts or [])))
    next_cursor = (open_rows[0] - 1) if open_rows else up_to_id
    loop_state.write(session, loop_state.ALERTS_CURSOR, cursor=max(next_cursor, cursor))
    return alerts


def enqueue_job_alerts(session: Session) -> int:
    """Evaluate and enqueue each job alert to its job's channels (or the default ones)."""
    return sum(
        enqueue(session, alert.event, channels_for(session, alert.channels))
        for alert in evaluate(session)
    )
