"""Alerts end to end on both databases, without Prefect: JobLog outcomes in, exactly one email
(through a real local SMTP server) and one webhook call (a real local HTTP receiver) out per
event, none carrying a secret; retries with backoff; channels encrypted and listed masked."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update

from connecthub.alerts import add_channel, deliver_due
from connecthub.alerts.channels import list_channels
from connecthub.alerts.outbox import DeliveryStatus, failing_deliveries
from connecthub.alerts.streaks import enqueue_job_alerts
from connecthub.db import crud, joblog
from connecthub.db.engine import session_scope
from connecthub.db.models import AlertChannel, AlertDelivery, utcnow
from connecthub.jobs.spec import JobSpec
from connecthub.jobs.vocabulary import RunStatus, Trigger
from tests.support.http import Reply, ScriptedServer
from tests.support.jobs import CANARY
from tests.support.smtp import SmtpServer

JOB = "crm.sync"


@pytest.fixture
def receivers(any_db: None) -> Iterator[tuple[SmtpServer, ScriptedServer]]:
    with SmtpServer() as smtp, ScriptedServer() as hook:
        with session_scope() as session:
            add_channel(session, "mail", smtp.url(), default=True)
            add_channel(session, "hook", f"json://127.0.0.1:{hook.url.rsplit(':', 1)[1]}/alert")
        yield smtp, hook


def save_job(**fields: Any) -> None:
    with session_scope() as session:
        crud.save_job(session, JobSpec(
            id=JOB, cron_expr="* * * * *", handler_path="tests.plugins.jobs:EchoJob",
            secret_cfg={"token": CANARY}, **fields,
        ))


def outcome(status: RunStatus, *, attempt: int = 1, error: str | None = None) -> int:
    """A finished attempt of a new flow run, written as the flow writes it."""
    flow_run_id = str(uuid.uuid4())
    joblog.record_running(flow_run_id, attempt, job_id=JOB, trigger=Trigger.SCHEDULE,
                          snapshot_params={}, retry_of=None)
    joblog.record_final(flow_run_id, attempt, status, job_id=JOB, error=error)
    return joblog.find_attempt(flow_run_id, attempt).id


def alert_pass() -> None:
    with session_scope() as session:
        enqueue_job_alerts(session)
    deliver_due()


def hook_bodies(hook: ScriptedServer) -> list[dict[str, Any]]:
    return [json.loads(request.body) for request in hook.received]


def test_one_alert_per_streak_one_recovery_and_no_secret(receivers) -> None:
    smtp, hook = receivers
    save_job(alerts=["mail", "hook"])
    alert_pass()  # nothing happened yet
    error = "RuntimeError: remote refused token ***\nTraceback line"
    first = outcome(RunStatus.FAILED, error=error)
    alert_pass()
    outcome(RunStatus.CRASHED, error="the worker died")
    outcome(RunStatus.FAILED, error=error)
    alert_pass()
    alert_pass()  # evaluating again adds nothing
    recovered = outcome(RunStatus.SUCCESS)
    outcome(RunStatus.SUCCESS)
    alert_pass()

    texts = smtp.texts()
    assert len(texts) == 2, texts
    assert texts[0].startswith(f"[ConnectHub] {JOB} FAILED")
    assert "Error: RuntimeError: remote refused token ***" in texts[0]
    assert "Traceback line" not in texts[0]
    assert f"/admin/job-log/details/{first}" in texts[0]
    assert texts[1].startswith(f"[ConnectHub] {JOB} recovered")
    assert f"/admin/job-log/details/{recovered}" in texts[1]
    bodies = hook_bodies(hook)
    assert [body["title"] for body in bodies] == [
        f"[ConnectHub] {JOB} FAILED", f"[ConnectHub] {JOB} recovered"
    ]
    for text in [*texts, *(json.dumps(body) for body in bodies)]:
        assert CANARY not in text
        assert smtp.password not in text


def test_a_failed_attempt_that_prefect_retries_does_not_alert(receivers) -> None:
    smtp, _hook = receivers
    save_job(max_retries=1)
    outcome(RunStatus.FAILED, attempt=1, error="flaky")
    alert_pass()
    assert smtp.texts() == []
    outcome(RunStatus.FAILED, attempt=2, error="still failing")
    alert_pass()
    assert len(smtp.texts()) == 1  # a job naming no channel alerts the default one
    assert "still failing" in smtp.texts()[0]


def test_after_n_in_a_row_and_every_failure(receivers) -> None:
    smtp, _hook = receivers
    save_job(alerts=["mail"], alert_after_failures=2, alert_every_failure=True)
    outcome(RunStatus.FAILED, error="one")
    alert_pass()
    assert smtp.texts() == []
    outcome(RunStatus.FAILED, error="two")
    outcome(RunStatus.FAILED, error="three")
    alert_pass()
    subjects = [text.splitlines()[0] for text in smtp.texts()]
    assert subjects == [f"[ConnectHub] {JOB} FAILED (2 in a row)",
                        f"[ConnectHub] {JOB} FAILED (3 in a row)"]


def test_two_loops_at_once_send_each_alert_once(receivers) -> None:
    smtp, hook = receivers
    save_job(alerts=["mail", "hook"])
    outcome(RunStatus.FAILED, error="boom")
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            barrier.wait()
            alert_pass()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=loop) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    alert_pass()
    assert len(smtp.texts()) == 1
    assert len(hook.received) == 1


def test_a_failed_delivery_retries_with_backoff_and_shows(receivers) -> None:
    _smtp, hook = receivers
    save_job(alerts=["hook"])
    hook.script(Reply(status=500, body="down"))
    outcome(RunStatus.FAILED, error="boom")
    alert_pass()
    with session_scope() as session:
        failing = failing_deliveries(session)
        assert [(d.channel, d.status, d.attempts) for d in failing] == [
            ("hook", DeliveryStatus.PENDING.value, 1)
        ]
        assert failing[0].next_attempt_at > utcnow()
        assert failing[0].last_error
    deliver_due()  # not due yet: the backoff holds it
    assert len(hook.received) == 1
    with session_scope() as session:
        session.execute(update(AlertDelivery).values(next_attempt_at=utcnow()))
    deliver_due()
    assert len(hook.received) == 2
    with session_scope() as session:
        assert failing_deliveries(session) == []
        delivery = session.scalars(select(AlertDelivery)).one()
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT.value, 2)


def test_a_pending_delivery_left_by_a_dead_loop_is_sent_once(receivers) -> None:
    _smtp, hook = receivers
    save_job(alerts=["hook"])
    outcome(RunStatus.FAILED, error="boom")
    with session_scope() as session:
        enqueue_job_alerts(session)  # the loop died before sending
    with session_scope() as session:
        enqueue_job_alerts(session)  # the restarted loop sees the same event again
    deliver_due()
    deliver_due()
    assert len(hook.received) == 1


def test_channel_urls_are_encrypted_and_listed_masked(receivers) -> None:
    smtp, _hook = receivers
    with session_scope() as session:
        channels = {channel.name: channel for channel in list_channels(session)}
        stored = session.scalars(select(AlertChannel.url_token)).all()
        # The key rotation and the start-up key check cover the channels too.
        assert len(crud.secret_tokens(session)) == len(stored) == 2
    assert smtp.password not in channels["mail"].masked_url
    assert channels["mail"].masked_url.startswith("mailto://alerts:")
    assert channels["hook"].masked_url.endswith("/***")
    for token in stored:
        assert smtp.password not in token and "alert" not in token
