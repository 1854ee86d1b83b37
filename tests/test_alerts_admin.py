"""The admin's alert pages over HTTP (Prefect unreachable): a channel added in the admin is
stored encrypted and never shown back, and the dashboard lists a failing delivery and a failing
job, and says Prefect is unreachable."""

from __future__ import annotations

from sqlalchemy import select

from connecthub.alerts.outbox import deliver_due
from connecthub.alerts.streaks import enqueue_job_alerts
from connecthub.db.engine import session_scope
from connecthub.db.models import AlertChannel
from tests.support.admin import RecordingClient, add_log, create_job

HOOK_SECRET = "hook-secret-31f0"


def test_a_channel_added_in_the_admin_is_encrypted_and_masked(admin: RecordingClient) -> None:
    url = f"json://bot:{HOOK_SECRET}@127.0.0.1:9/{HOOK_SECRET}"
    created = admin.post("/admin/alert-channel/create",
                         data={"name": "ops", "url": url, "is_default": "y", "save": "Save"})
    assert created.status_code == 302, created.text
    with session_scope() as session:
        channel = session.scalars(select(AlertChannel)).one()
        assert (channel.name, channel.is_default) == ("ops", True)
        assert HOOK_SECRET not in channel.url_token
    listed = admin.get("/admin/alert-channel/list").text
    assert "json://bot:****@127.0.0.1:9/***" in listed
    for body in admin.bodies:
        assert HOOK_SECRET not in body
    refused = admin.post("/admin/alert-channel/create",
                         data={"name": "bad", "url": "nope://x", "save": "Save"})
    assert refused.status_code == 400
    assert "not an apprise URL" in refused.text


def test_the_dashboard_shows_failures_and_failing_deliveries(admin: RecordingClient) -> None:
    assert create_job(admin).status_code == 302
    admin.post("/admin/alert-channel/create",
               data={"name": "ops", "url": "json://127.0.0.1:9/hook", "is_default": "y",
                     "save": "Save"})
    add_log(status="FAILED", error="RemoteError: HTTP 503\nsecond line")
    with session_scope() as session:
        enqueue_job_alerts(session)
    deliver_due()  # nothing listens on port 9: the delivery fails and will be retried
    page = admin.get("/admin/").text
    assert "Unhealthy" in page
    assert "Prefect is not reachable" in page
    assert "Failing jobs: 1" in page and "RemoteError: HTTP 503" in page
    assert "second line" not in page
    assert "Failing alert deliveries: 1" in page
    assert '<svg id="runs-chart"' in page
