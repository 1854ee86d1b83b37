"""The REST API at /api/v1, in this process with Prefect unreachable (and once against a real
worker): tokens, roles, jobs through the admin's validation, the JobLog, errors.

- A table of role x API route, enumerated from the app: no token or a bad one is 401, a role
  below the route's least role is 403 (nothing changes), a role at or above it gets through.
- Token lifecycle: created (`connecthub tokens create`, shown once), used, its last use
  recorded and listed, expired, revoked (401 from then on), and a disabled user's token is 401.
- Jobs: create, get, list with paging and prefix search, replace, patch, enable, disable,
  delete; the same field and message as the admin form for a bad job; secrets write-only.
- JobLog: filters, cursor paging, one entry with its traceback; run and retry start real runs
  on a real worker.
- Errors are JSON naming the field; a body over 1 MiB is 413; nothing is a 500.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete
from starlette.routing import Mount
from starlette.testclient import TestClient

from connecthub.app.main import API_PREFIX, create_app
from connecthub.db import crud, tokens, users
from connecthub.db.engine import session_scope
from connecthub.db.models import ApiToken, Job, utcnow
from connecthub.security.roles import Role
from tests.support.admin import (
    SECRET_VALUE,
    TEST_ACTOR,
    RecordingClient,
    add_log,
    add_user,
    field_error,
    login,
    stored_job,
)
from tests.support.cli import Cli, one_line_error

HANDLER = "extensions.example.job:ExampleJob"
JOB = {"id": "api.hello", "handler_path": HANDLER, "cron_expr": "*/5 * * * *",
       "public_cfg": {"name": "Mars"}, "secret_cfg": {"token": SECRET_VALUE}}


def token_for(username: str, expires_in: timedelta | None = None) -> tuple[int, str]:
    with session_scope() as session:
        row, token = tokens.create_token(session, username, actor=TEST_ACTOR, expires_in=expires_in)
        return row.id, token


@dataclass
class Api:
    client: RecordingClient
    tokens: dict[Role, str]

    def call(self, method: str, path: str, role: Role | None = Role.ADMIN,
             **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        headers.update(kwargs.pop("headers", {}))
        return self.client.request(method, API_PREFIX + path, headers=headers, **kwargs)


@pytest.fixture
def api(prefect_down: None) -> Iterator[Api]:
    with RecordingClient(create_app(), follow_redirects=False) as client:
        add_user("viewer1", "viewer")
        add_user("operator1", "operator")
        found = {Role.ADMIN: token_for("admin")[1], Role.VIEWER: token_for("viewer1")[1],
                 Role.OPERATOR: token_for("operator1")[1]}
        api = Api(client, found)
        yield api
        with session_scope() as session:
            stored = crud.secret_tokens(session)
        for body in client.bodies:
            assert SECRET_VALUE not in body and not any(t in body for t in stored)


def api_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route the API serves, its documentation's included."""
    mount = next(r for r in app.routes if isinstance(r, Mount) and r.path == API_PREFIX)
    found = []
    for route in mount.app.routes:
        # Included routers (FastAPI 0.150) list their routes as effective route contexts.
        inner = list(route.effective_route_contexts()) if hasattr(
            route, "effective_route_contexts") else [route]
        for each in inner:
            found += [(method, each.path) for method in sorted(set(each.methods) - {"HEAD"})]
    return found


# The least role of each API route (None: no token needed). A route that is not here fails
# the test until someone decides who may use it.
LEAST_ROLE: dict[tuple[str, str], Role | None] = {
    ("GET", "/health"): None,
    ("GET", "/openapi.json"): None,
    ("GET", "/docs"): None,
    ("GET", "/docs/oauth2-redirect"): None,
    ("GET", "/jobs"): Role.VIEWER,
    ("GET", "/jobs/{job_id}"): Role.VIEWER,
    ("POST", "/jobs"): Role.ADMIN,
    ("PUT", "/jobs/{job_id}"): Role.ADMIN,
    ("PATCH", "/jobs/{job_id}"): Role.ADMIN,
    ("DELETE", "/jobs/{job_id}"): Role.ADMIN,
    ("POST", "/jobs/{job_id}/enable"): Role.OPERATOR,
    ("POST", "/jobs/{job_id}/disable"): Role.OPERATOR,
    ("POST", "/jobs/{job_id}/runs"): Role.OPERATOR,
    ("GET", "/logs"): Role.VIEWER,
    ("GET", "/logs/{log_id}"): Role.VIEWER,
    ("POST", "/logs/{log_id}/retry"): Role.OPERATOR,
    ("GET", "/audit"): Role.ADMIN,
}
BODIES = {"POST /jobs": {**JOB, "id": "api.created"}, "PUT /jobs/{job_id}": JOB,
          "PATCH /jobs/{job_id}": {"description": "patched"}}


def test_role_by_api_route_table(api: Api) -> None:
    routes = api_routes(api.client.app)
    assert len(routes) == len(set(routes))
    checked = 0
    for method, route_path in routes:
        key = (method, route_path)
        assert key in LEAST_ROLE, f"API route {key} is not in the role table"
        required = LEAST_ROLE[key]
        for role in (None, Role.VIEWER, Role.OPERATOR, Role.ADMIN):
            if stored_job(JOB["id"]) is None:
                assert api.call("POST", "/jobs", json=JOB).status_code == 201
            with session_scope() as session:
                session.execute(delete(Job).where(Job.id == "api.created"))
            log_id = add_log(JOB["id"])
            path = route_path.replace("{job_id}", JOB["id"]).replace("{log_id}", str(log_id))
            before = stored_job(JOB["id"])
            body = BODIES.get(f"{method} {route_path}")
            response = api.call(method, path, role, json=body)
            # 503 is Prefect being down (run now); a 500 would be a bug of ours.
            assert response.status_code in (*range(200, 500), 503), (key, role, response.text)
            assert response.status_code == 204 or response.headers["content-type"].startswith(
                ("application/json", "text/html")), key
            if required is not None and role is None:
                assert response.status_code == 401, (key, response.status_code)
                assert response.headers["www-authenticate"] == "Bearer"
            elif required is not None and not role.allows(required):  # type: ignore[union-attr]
                assert response.status_code == 403, (key, role, response.status_code)
                assert required.value in response.json()["detail"]
                after = stored_job(JOB["id"])
                assert (before.enabled, before.description) == (  # type: ignore[union-attr]
                    after.enabled, after.description  # type: ignore[union-attr]
                )
            else:
                assert response.status_code not in (401, 403), (key, role, response.text)
            checked += 1
    assert checked == 4 * len(LEAST_ROLE)
    # A bad token is no token.
    response = api.client.get(f"{API_PREFIX}/jobs", headers={"Authorization": "Bearer chk_nope"})
    assert response.status_code == 401
    assert response.json() == {"detail": "This API token is unknown, revoked or expired.",
                               "field": None}


def test_token_lifecycle(api: Api) -> None:
    token_id, token = token_for("operator1", expires_in=timedelta(days=30))
    with session_scope() as session:
        row = session.get(ApiToken, token_id)
        assert row is not None and row.last_used_at is None
        assert token not in (row.token_hash, row.prefix) and row.token_hash != ""
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get(f"{API_PREFIX}/jobs", headers=headers).status_code == 200
    with session_scope() as session:
        used = session.get(ApiToken, token_id).last_used_at  # type: ignore[union-attr]
        assert used is not None and utcnow() - used < timedelta(minutes=1)
    # The user's role applies: an operator may not create a job.
    assert api.client.post(f"{API_PREFIX}/jobs", headers=headers, json=JOB).status_code == 403

    # Expired: as if created 31 days ago.
    with session_scope() as session:
        session.get(ApiToken, token_id).expires_at = utcnow() - timedelta(seconds=1)  # type: ignore[union-attr]
    assert api.client.get(f"{API_PREFIX}/jobs", headers=headers).status_code == 401
    with session_scope() as session:
        session.get(ApiToken, token_id).expires_at = None  # type: ignore[union-attr]
    assert api.client.get(f"{API_PREFIX}/jobs", headers=headers).status_code == 200

    # A disabled user's tokens stop working, and work again once the user is enabled.
    with session_scope() as session:
        users.set_disabled(session, "operator1", True, actor=TEST_ACTOR)
    assert api.client.get(f"{API_PREFIX}/jobs", headers=headers).status_code == 401
    with session_scope() as session:
        users.set_disabled(session, "operator1", False, actor=TEST_ACTOR)

    with session_scope() as session:
        tokens.revoke_token(session, token_id, actor=TEST_ACTOR)
    assert api.client.get(f"{API_PREFIX}/jobs", headers=headers).status_code == 401


def test_tokens_cli(cli: Cli) -> None:
    assert cli.run("users", "add", "ci", "--role", "operator").returncode == 0
    created = cli.run("tokens", "create", "--user", "ci", "--expires", "30d", "--name", "deploy")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert re.fullmatch(r"chk_[A-Za-z0-9_-]{43}", token), created.stdout
    assert "shown only now" in created.stderr
    bad = one_line_error(cli.run("tokens", "create", "--user", "ci", "--expires", "soon"))
    assert "expires: 'soon' is not a duration" in bad
    assert "no user 'ghost'" in one_line_error(cli.run("tokens", "create", "--user", "ghost"))

    listed = cli.run("tokens", "list").stdout
    assert re.search(r"^1\s+ci\s+chk_\S+\.\.\.\s+active\s+\d{4}-\d\d-\d\d \d\d:\d\d\s+-\s+deploy",
                     listed, re.M), listed
    assert token not in listed

    # Used against the app on the same database: the list shows the last use.
    with TestClient(create_app()) as client:
        response = client.get(f"{API_PREFIX}/jobs", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        listed = cli.run("tokens", "list").stdout
        assert re.search(r"active\s+\S+ \S+\s+\d{4}-\d\d-\d\d \d\d:\d\d\s+deploy", listed), listed
        assert cli.run("tokens", "revoke", "1").stdout.strip() == "revoked token #1"
        response = client.get(f"{API_PREFIX}/jobs", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
    assert re.search(r"^1\s+ci\s+\S+\s+revoked", cli.run("tokens", "list").stdout, re.M)
    assert "no token #9" in one_line_error(cli.run("tokens", "revoke", "9"))


def test_jobs_crud_and_secrets_are_write_only(api: Api) -> None:
    created = api.call("POST", "/jobs", json=JOB)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["job"]["id"] == JOB["id"] and body["job"]["has_secrets"] is True
    assert "secret_cfg" not in body["job"]
    assert body["sync_error"]  # Prefect is down: the save stands, the answer says why
    assert SECRET_VALUE not in created.text
    assert api.call("POST", "/jobs", json=JOB).status_code == 409

    got = api.call("GET", f"/jobs/{JOB['id']}", Role.VIEWER)
    assert got.status_code == 200 and got.json()["public_cfg"] == {"name": "Mars"}
    assert SECRET_VALUE not in got.text

    patched = api.call("PATCH", f"/jobs/{JOB['id']}", json={"cron_expr": "0 * * * *"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["job"]["cron_expr"] == "0 * * * *"
    job = stored_job(JOB["id"])
    assert job is not None and job.secret_cfg  # a patch without secret_cfg keeps the secrets
    replaced = api.call("PUT", f"/jobs/{JOB['id']}",
                        json={**JOB, "secret_cfg": {}, "description": "whole"})
    assert replaced.status_code == 200
    assert replaced.json()["job"]["has_secrets"] is False
    assert replaced.json()["job"]["cron_expr"] == "*/5 * * * *"
    moved = api.call("PATCH", f"/jobs/{JOB['id']}", json={"id": "other.id"})
    assert moved.status_code == 422 and moved.json()["field"] == "id"

    disabled = api.call("POST", f"/jobs/{JOB['id']}/disable", Role.OPERATOR)
    assert disabled.status_code == 200 and disabled.json()["job"]["enabled"] is False
    assert api.call("POST", f"/jobs/{JOB['id']}/enable", Role.OPERATOR).json()["job"]["enabled"]

    for index in range(5):
        assert api.call("POST", "/jobs", json={**JOB, "id": f"page.job{index}",
                                               "name": f"Paged {index}"}).status_code == 201
    page = api.call("GET", "/jobs", Role.VIEWER, params={"limit": 2, "offset": 1, "q": "PAGE"})
    assert page.json()["total"] == 5
    assert [job["id"] for job in page.json()["items"]] == ["page.job1", "page.job2"]
    assert api.call("GET", "/jobs", params={"q": "paged 4"}).json()["total"] == 1

    assert api.call("DELETE", f"/jobs/{JOB['id']}").status_code == 204
    gone = api.call("DELETE", f"/jobs/{JOB['id']}")
    assert gone.status_code == 404 and gone.json()["detail"] == (
        f"Job '{JOB['id']}' was already deleted."
    )
    assert api.call("GET", f"/jobs/{JOB['id']}").status_code == 404


@pytest.mark.parametrize(("field", "value", "form_value"), [
    ("cron_expr", "61 * * * *", "61 * * * *"),
    ("timezone", "Mars/Olympus", "Mars/Olympus"),
    ("handler_path", "extensions.nothing:Here", "extensions.nothing:Here"),
    ("id", "bad id!", "bad id!"),
    ("max_retries", -1, "-1"),
])
def test_a_bad_job_is_refused_with_the_admins_message(
    api: Api, field: str, value: Any, form_value: str
) -> None:
    from tests.support.admin import job_form

    refused = api.call("POST", "/jobs", json={**JOB, field: value})
    assert refused.status_code == 422
    body = refused.json()
    assert body["field"] == field
    # The admin form shows the same message under the same field.
    assert login(api.client).status_code == 302
    page = api.client.post("/admin/job/create", data=job_form(**{field: form_value}))
    assert page.status_code == 400
    assert body["errors"][field] == field_error(page.text, field)
    assert stored_job("bad id!") is None and stored_job(JOB["id"]) is None


def test_errors_are_json_and_never_a_500(api: Api) -> None:
    cases = [
        ("POST", "/jobs",
         {"content": b"{not json", "headers": {"content-type": "application/json"}}),
        ("POST", "/jobs", {"json": [1, 2]}),
        ("POST", "/jobs", {"json": {**JOB, "unknown": 1}}),
        ("GET", "/logs", {"params": {"status": "NOPE"}}),
        ("GET", "/logs", {"params": {"cursor": "-1"}}),
        ("GET", "/logs/abc", {}),
        ("GET", "/logs/99999999999999999999", {}),
        ("GET", "/jobs/%00", {}),
        ("POST", "/logs/1/retry", {"json": {"use": "yesterday"}}),
        ("POST", "/jobs/x/runs", {"json": {"params": "no"}}),
    ]
    for method, path, kwargs in cases:
        response = api.call(method, path, **kwargs)
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text)
        body = response.json()
        assert isinstance(body["detail"], str) and "field" in body, body
        assert "Traceback" not in response.text
    unknown = api.call("POST", "/jobs", json={**JOB, "unknown": 1}).json()
    assert unknown["field"] == "unknown"
    big = api.call("POST", "/jobs", content=b'{"id": "' + b"x" * (1024 * 1024) + b'"}',
                   headers={"content-type": "application/json"})
    assert big.status_code == 413 and big.json()["field"] == "body"
    streamed = api.call("POST", "/jobs", content=iter([b'{"id": "', b"x" * (1024 * 1024), b'"}']),
                        headers={"content-type": "application/json"})  # no Content-Length
    assert streamed.status_code == 413 and streamed.json()["field"] == "body"
    assert stored_job(JOB["id"]) is None


def test_logs_filters_cursor_and_traceback(api: Api) -> None:
    for index in range(7):
        add_log("job.a" if index % 2 else "job.b",
                status="FAILED" if index < 4 else "SUCCESS", traceback=f"Traceback {index}")
    first = api.call("GET", "/logs", Role.VIEWER, params={"limit": 3}).json()
    assert [item["id"] for item in first["items"]] == [7, 6, 5]
    second = api.call("GET", "/logs", params={"limit": 3, "cursor": first["next_cursor"]}).json()
    assert [item["id"] for item in second["items"]] == [4, 3, 2]
    last = api.call("GET", "/logs", params={"limit": 3, "cursor": second["next_cursor"]}).json()
    assert [item["id"] for item in last["items"]] == [1] and last["next_cursor"] is None
    filtered = api.call("GET", "/logs", params={"job_id": "job.a", "status": "FAILED"}).json()
    assert [item["id"] for item in filtered["items"]] == [4, 2]
    assert "traceback" not in filtered["items"][0]
    future = (utcnow() + timedelta(hours=1)).isoformat()
    assert api.call("GET", "/logs", params={"since": future}).json()["items"] == []
    assert len(api.call("GET", "/logs", params={"until": future}).json()["items"]) == 7
    one = api.call("GET", "/logs/2", Role.VIEWER).json()
    assert one["traceback"] == "Traceback 1" and one["snapshot_params"] == {"name": "Mars"}
    assert api.call("GET", "/logs/99").status_code == 404


def test_run_and_retry_with_prefect_down_say_why(api: Api) -> None:
    assert api.call("POST", "/jobs", json=JOB).status_code == 201
    started = api.call("POST", f"/jobs/{JOB['id']}/runs", Role.OPERATOR, json={})
    assert started.status_code == 503 and "not reachable" in started.json()["detail"]
    log_id = add_log(JOB["id"])
    retried = api.call("POST", f"/logs/{log_id}/retry", Role.OPERATOR, json={"use": "current"})
    assert retried.status_code == 503
    assert api.call("POST", "/jobs/no.such.job/runs", Role.OPERATOR).status_code == 404


def test_openapi_document(api: Api) -> None:
    document = api.client.get(f"{API_PREFIX}/openapi.json")
    assert document.status_code == 200
    paths = document.json()["paths"]
    assert {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/runs", "/logs", "/logs/{log_id}",
            "/logs/{log_id}/retry", "/health"} <= set(paths)
    create_body = paths["/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "cron_expr" in create_body["properties"] and "$ref" not in json.dumps(create_body)


def test_run_now_and_retry_through_the_api_on_a_real_worker(
    pg_env: None, worker: Path
) -> None:
    with TestClient(create_app()) as client:
        add_user("operator1", "operator")
        admin_token, operator_token = token_for("admin")[1], token_for("operator1")[1]
        job = {**JOB, "id": "api.engine", "handler_path": "tests.plugins.jobs:EchoJob",
               "public_cfg": {"message": "from the api"}, "secret_cfg": {}}
        admin = {"Authorization": f"Bearer {admin_token}"}
        operator = {"Authorization": f"Bearer {operator_token}"}
        created = client.post(f"{API_PREFIX}/jobs", headers=admin, json=job)
        assert created.status_code == 201, created.text
        started = client.post(f"{API_PREFIX}/jobs/api.engine/runs", headers=operator,
                              json={"params": {"message": "override"}})
        assert started.status_code == 202, started.text
        log_id = started.json()["log_id"]
        from deployments.runs import wait_for_final

        assert wait_for_final(log_id, timeout_seconds=120).status == "SUCCESS"
        log = client.get(f"{API_PREFIX}/logs/{log_id}", headers=operator).json()
        assert log["snapshot_params"] == {"message": "override"} and log["status"] == "SUCCESS"
        retried = client.post(f"{API_PREFIX}/logs/{log_id}/retry", headers=operator,
                              json={"use": "current"})
        assert retried.status_code == 202
        final = wait_for_final(retried.json()["log_id"], timeout_seconds=120)
        assert (final.status, final.retry_of, final.snapshot_params) == (
            "SUCCESS", log_id, {"message": "from the api"}
        )
