"""What an alert says: one `AlertEvent` per thing that happened, under a deterministic key.

The key names the event itself (the JobLog row that started a streak, the flow run that is
late, the last heartbeat of the pool's workers), so every loop that sees the same event builds
the same key, and `outbox` sends it once. A message names the job, the status, the first line
of the JobLog error (masked by the flow before it was stored) and links to the JobLog page and
the Prefect run; it never holds a secret value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from connecthub.core.config import get_settings
from connecthub.db.models import JobLog
from connecthub.jobs.vocabulary import admin_joblog_url

MAX_ERROR_LINE = 300


class AlertKind(enum.StrEnum):
    FAILING = "failing"  # a job's failure streak reached its threshold
    FAILED = "failed"  # one more failure of a job that alerts on every failure
    RECOVERED = "recovered"
    LATE_RUN = "late-run"
    NO_WORKER = "no-worker"
    TEST = "test"


@dataclass(frozen=True)
class AlertEvent:
    key: str
    kind: AlertKind
    title: str
    body: str
    job_id: str | None = None


def first_line(text: str | None) -> str:
    line = next((line.strip() for line in (text or "").splitlines() if line.strip()), "")
    return line[:MAX_ERROR_LINE]


def _links(log_id: int | None, flow_run_id: str | None) -> list[str]:
    settings = get_settings()
    links = []
    if log_id is not None:
        links.append(f"JobLog: {admin_joblog_url(settings.admin_url, log_id)}")
    if flow_run_id and settings.ui_url:
        links.append(f"Prefect run: {settings.ui_url}/runs/flow-run/{flow_run_id}")
    return links


def failure(log: JobLog, *, kind: AlertKind, streak: int, key: str) -> AlertEvent:
    in_a_row = f" ({streak} in a row)" if streak > 1 else ""
    lines = [
        f"Job: {log.job_id}",
        f"Status: {log.status}{in_a_row}",
        f"Error: {first_line(log.error) or '(no error recorded)'}",
        *_links(log.id, log.flow_run_id),
    ]
    return AlertEvent(
        key, kind, f"[ConnectHub] {log.job_id} {log.status}{in_a_row}", "\n".join(lines),
        log.job_id,
    )


def recovery(log: JobLog, *, failures: int) -> AlertEvent:
    lines = [
        f"Job: {log.job_id}",
        f"Status: {log.status} after {failures} failure(s) in a row",
        *_links(log.id, log.flow_run_id),
    ]
    return AlertEvent(
        f"recovered:{log.job_id}:{log.id}", AlertKind.RECOVERED,
        f"[ConnectHub] {log.job_id} recovered", "\n".join(lines), log.job_id,
    )


def late_run(job_id: str, flow_run_id: str, expected: datetime, late_seconds: float) -> AlertEvent:
    lines = [
        f"Job: {job_id}",
        f"Status: LATE, scheduled for {expected:%Y-%m-%d %H:%M:%S %Z} and not started after "
        f"{late_seconds / 60:.0f} min (is a worker polling the pool?)",
        *_links(None, flow_run_id),
    ]
    return AlertEvent(
        f"late:{flow_run_id}", AlertKind.LATE_RUN, f"[ConnectHub] {job_id} run is late",
        "\n".join(lines), job_id,
    )


def no_worker(pool: str, last_seen: datetime | None, silent_seconds: float) -> AlertEvent:
    seen = f"{last_seen:%Y-%m-%d %H:%M:%S %Z}" if last_seen else "never"
    lines = [
        f"Work pool: {pool}",
        f"Status: no worker has polled for {silent_seconds / 60:.1f} min (last seen: {seen}); "
        "scheduled runs will not start",
    ]
    key = f"no-worker:{pool}:{last_seen.isoformat() if last_seen else 'never'}"
    return AlertEvent(
        key, AlertKind.NO_WORKER, f"[ConnectHub] no worker on pool {pool}", "\n".join(lines)
    )


def test_message(channel: str, at: datetime) -> AlertEvent:
    return AlertEvent(
        f"test:{at.isoformat()}", AlertKind.TEST, "[ConnectHub] test alert",
        f"A test of the alert channel '{channel}': it works.",
    )
