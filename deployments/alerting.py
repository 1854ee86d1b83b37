"""One alerting pass of the sync loop: find what happened, enqueue its alerts, send them.

Job events (a failure streak starting, continuing with `alert_every_failure`, recovering) come
from JobLog (`connecthub.alerts.streaks`) and go to the job's channels, or the default ones.
The pool's events need Prefect: a scheduled run not started CONNECTHUB_LATE_RUN_SECONDS
(default 300) after its time, and no worker heartbeat on the pool for
CONNECTHUB_NO_WORKER_ALERT_SECONDS (default 300); they go to the default channels (a late run,
to its job's). Every event has a deterministic key, so any number of loops enqueue it once;
then the due deliveries are sent (`connecthub.alerts.outbox`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from connecthub.alerts import messages, streaks
from connecthub.alerts.channels import channels_for
from connecthub.alerts.outbox import deliver_due, enqueue
from connecthub.core.config import get_settings
from connecthub.db.engine import session_scope
from connecthub.db.models import Job, utcnow
from deployments.client import prefect_client
from deployments.health import WorkerInfo, read_late_runs, read_workers

logger = logging.getLogger("connecthub.alerts")


@dataclass
class AlertingReport:
    enqueued: int = 0
    sent: int = 0
    failed: int = 0


def no_worker_event(
    workers: list[WorkerInfo], now: datetime
) -> messages.AlertEvent | None:
    """The "no worker polls the pool" event, when no worker has polled for long enough."""
    settings = get_settings()
    beats = [worker.last_heartbeat for worker in workers if worker.last_heartbeat is not None]
    last_seen = max(beats, default=None)
    silent_for = timedelta(seconds=settings.no_worker_alert_seconds)
    if last_seen is not None and now - last_seen < silent_for:
        return None
    silent = (now - last_seen).total_seconds() if last_seen else settings.no_worker_alert_seconds
    return messages.no_worker(settings.work_pool, last_seen, silent)


def _pool_events(now: datetime) -> list[tuple[messages.AlertEvent, list[str]]]:
    with prefect_client() as client:
        workers = read_workers(client, now)
        late = read_late_runs(client, now)
    with session_scope() as session:
        jobs = {job.id: job for job in session.scalars(
            select(Job).where(Job.id.in_({run.job_id for run in late}))
        )}
        if not jobs and not session.scalar(select(Job.id).where(Job.enabled).limit(1)):
            return []  # nothing is scheduled: a pool without workers harms no one
    events: list[tuple[messages.AlertEvent, list[str]]] = []
    missing = no_worker_event(workers, now)
    if missing is not None:
        events.append((missing, []))
    late_seconds = get_settings().late_run_seconds
    for run in late:
        job = jobs.get(run.job_id)
        event = messages.late_run(run.job_id, run.flow_run_id, run.expected_start, late_seconds)
        events.append((event, list(job.alerts) if job is not None else []))
    return events


def run_alerting() -> AlertingReport:
    """Evaluate, enqueue and send; raises PrefectUnavailableError after the job alerts."""
    report = AlertingReport()
    with session_scope() as session:
        report.enqueued = streaks.enqueue_job_alerts(session)
    try:
        pool_events = _pool_events(utcnow())
    finally:
        report.sent, report.failed = deliver_due()
    with session_scope() as session:
        for event, names in pool_events:
            report.enqueued += enqueue(session, event, channels_for(session, names))
    sent, failed = deliver_due()
    report.sent += sent
    report.failed += failed
    return report
