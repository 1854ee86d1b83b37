"""The admin over HTTP in this process: its test credentials, `RecordingClient` (a TestClient
that keeps every response), logging in, the job form, and reading pages, rows and routes."""

from __future__ import annotations

import html
import json
import re
from typing import Any

from sqlalchemy import func, select
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from connecthub.db.audit import Actor
from connecthub.db.engine import session_scope
from connecthub.db.models import Job, JobLog
from connecthub.jobs.vocabulary import RunStatus, Trigger

USERNAME = "admin"
PASSWORD = "test-admin-password"
SECRET_VALUE = "s3cret-demo-token-9f8e7d"
HANDLER = "extensions.example.job:ExampleJob"


class RecordingClient(TestClient):
    """A TestClient that keeps every response body, to check none of them leaks a secret."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bodies: list[str] = []

    def request(self, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def,override]
        response = super().request(*args, **kwargs)
        for item in [*response.history, response]:
            self.bodies.append(
                item.text + "\n" + "\n".join(f"{k}: {v}" for k, v in item.headers.items())
            )
        return response


def login(client: TestClient, username: str = USERNAME, password: str = PASSWORD) -> Any:
    return client.post("/admin/login", data={"username": username, "password": password})


def job_form(**overrides: str) -> dict[str, str]:
    form = {
        "id": "example.hello",
        "name": "Hello",
        "description": "",
        "handler_path": HANDLER,
        "cron_expr": "* * * * *",
        "timezone": "UTC",
        "enabled": "y",
        "public_cfg": '{"name": "Mars"}',
        "secret_cfg": json.dumps({"token": SECRET_VALUE}),
        "timeout_seconds": "",
        "max_retries": "0",
        "retry_delay_seconds": "60",
        "concurrency_limit": "1",
        "collision_strategy": "ENQUEUE",
        "tags": "demo",
        "save": "Save",
    }
    form.update(overrides)
    return form


def create_job(client: TestClient, **overrides: str) -> Any:
    return client.post("/admin/job/create", data=job_form(**overrides))


def stored_job(job_id: str = "example.hello") -> Job | None:
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is not None:
            session.expunge(job)
        return job


def job_count() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Job)) or 0


def add_log(job_id: str = "example.hello", **values: Any) -> int:
    with session_scope() as session:
        log = JobLog(
            job_id=job_id,
            status=values.pop("status", RunStatus.FAILED.value),
            trigger=Trigger.SCHEDULE.value,
            snapshot_params=values.pop("snapshot_params", {"name": "Mars"}),
            **values,
        )
        session.add(log)
        session.flush()
        return log.id


def field_group(page: str, field: str) -> str:
    """The unescaped HTML of the form group that holds the input named `field`."""
    for group in re.findall(r'<div class="mb-3 form-group row">(.*?)\n</div>', page, re.S):
        if f'name="{field}"' in group:
            return html.unescape(group)
    raise AssertionError(f"no form field {field!r} on the page")


def field_error(page: str, field: str) -> str:
    group = field_group(page, field)
    errors = re.findall(r'<div class="invalid-feedback">(.*?)</div>', group, re.S)
    assert errors, f"no error shown under {field!r}"
    assert "is-invalid" in group
    return " ".join(errors)


def page_csrf_token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the page has no CSRF token"
    return match.group(1)


def admin_routes() -> list[Route]:
    from connecthub.app.main import create_app  # here: tests/conftest.py imports this module

    app = create_app()
    mount = next(r for r in app.routes if isinstance(r, Mount) and r.path == "/admin")
    return [route for route in mount.routes if isinstance(route, Route)]


# --- users with roles ------------------------------------------------------------------------

ROLE_PASSWORD = "role-user-password"
# Who the audit trail names for the changes tests make directly.
TEST_ACTOR = Actor("test", "local")


def add_user(username: str, role: str, password: str = ROLE_PASSWORD) -> int:
    """A user of `role` in the session's database; its id."""
    from connecthub.db import users
    from connecthub.security.roles import Role

    with session_scope() as session:
        return users.create_user(session, username, Role(role), password, actor=TEST_ACTOR).id


def logged_in_as(app: Any, username: str, password: str = ROLE_PASSWORD) -> TestClient:
    """A client of `app` logged in as `username` (the caller closes it)."""
    client = TestClient(app, follow_redirects=False)
    response = login(client, username, password)
    assert response.status_code == 302, (username, response.status_code)
    return client


def admin_identities(app: Any) -> list[str]:
    """The identities of every view the admin of `app` serves (`create_app` keeps the Admin)."""
    return [view.identity for view in app.state.admin.views if hasattr(view, "identity")]
