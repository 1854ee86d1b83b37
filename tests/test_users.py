"""Users and roles in the admin, and `connecthub users`.

- A table of role x admin route, enumerated from the app's routes and views: a role below the
  least role of a route gets 403 (and nothing changes), a role at or above it gets what an
  admin gets. A viewer does not see the buttons it may not use.
- A role change applies to an open session at once; disabling a user or resetting the password
  ends the user's sessions; the last enabled admin cannot be demoted or disabled.
- The first admin is created from ADMIN_USERNAME / ADMIN_PASSWORD when the table has none.
- The login throttle is shared by two real admin processes on one database.
- `connecthub users add/list/set-role/disable/enable/reset-password` in a child process; the
  printed one-time password logs in.
"""

from __future__ import annotations

import os
import re
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from connecthub.alerts import add_channel
from connecthub.alerts.channels import list_channels
from connecthub.app.main import create_app
from connecthub.db import users
from connecthub.db.engine import session_scope
from connecthub.db.models import User
from connecthub.db.tokens import TokenError, parse_duration
from connecthub.security.roles import Role
from tests.support.admin import (
    PASSWORD,
    TEST_ACTOR,
    USERNAME,
    add_log,
    add_user,
    admin_identities,
    create_job,
    logged_in_as,
    login,
    page_csrf_token,
    stored_job,
)
from tests.support.cli import CONNECTHUB, Cli, one_line_error
from tests.support.processes import free_port, start_admin, stop_process

JOB_ID = "example.hello"
ROLES = (Role.VIEWER, Role.OPERATOR, Role.ADMIN)

# The least role of each admin route: the table this test holds the app to. A route that is
# not here fails the test until someone decides who may use it.
LEAST_ROLE = {
    "index": Role.VIEWER,
    "list": Role.VIEWER,
    "details": Role.VIEWER,
    "ajax_lookup": Role.ADMIN,  # serves the create and edit forms
    "file_download": Role.VIEWER,
    "file_preview": Role.VIEWER,
    "create": Role.ADMIN,
    "edit": Role.ADMIN,
    "delete": Role.ADMIN,
    "export": Role.ADMIN,
    "import": Role.ADMIN,
    "view-job-run_job_now": Role.OPERATOR,
    "view-job-run_with_params": Role.OPERATOR,
    "view-job-enable_job": Role.OPERATOR,
    "view-job-disable_job": Role.OPERATOR,
    "view-job-log-retry_execution": Role.OPERATOR,
    "view-api-token-revoke_token": Role.ADMIN,
}
# Views that only an admin may open at all.
ADMIN_ONLY = {"user", "api-token", "audit-entry"}
NOT_CHECKED = {"login", "logout"}


def least_role(route_name: str, identity: str | None) -> Role:
    assert route_name in LEAST_ROLE, f"admin route {route_name!r} is not in the role table"
    return Role.ADMIN if identity in ADMIN_ONLY else LEAST_ROLE[route_name]


def admin_mount(app: Any) -> Mount:
    return next(r for r in app.routes if isinstance(r, Mount) and r.path == "/admin")


def _ensure_fixtures(admin: TestClient) -> dict[str, str]:
    """The job, a log, a channel and a user the routes act on (again, if a delete took them)."""
    if stored_job(JOB_ID) is None:
        assert create_job(admin).status_code == 302
    with session_scope() as session:
        if not any(channel.name == "ops" for channel in list_channels(session)):
            add_channel(session, "ops", "json://localhost:9/hook")
        viewer = users.get_user(session, "viewer1")
    return {"job": JOB_ID, "job-log": str(add_log()), "alert-channel": "ops",
            "alert-delivery": "1", "user": str(viewer.id), "api-token": "1",
            "audit-entry": "1"}


def test_role_by_admin_route_table(prefect_down: None) -> None:
    app = create_app()
    with TestClient(app, follow_redirects=False) as admin:
        assert login(admin).status_code == 302
        for role in ROLES[:2]:
            add_user(f"{role.value}1", role.value)
        clients = {
            Role.VIEWER: logged_in_as(app, "viewer1"),
            Role.OPERATOR: logged_in_as(app, "operator1"),
            Role.ADMIN: admin,
        }
        identities = admin_identities(app)
        assert {"job", "job-log", "alert-channel", "alert-delivery", "user"} <= set(identities)
        routes = [r for r in admin_mount(app).routes if isinstance(r, Route)]
        checked = denied = 0
        for route in routes:
            if route.name in NOT_CHECKED:
                continue
            for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                for identity in identities if "{identity}" in route.path else [None]:
                    if route.path.startswith("/job-log/"):
                        identity = "job-log"
                    elif route.path.startswith("/job/"):
                        identity = "job"
                    required = least_role(route.name, identity)
                    statuses = {}
                    for role in ROLES:
                        pks = _ensure_fixtures(admin)
                        client = clients[role]
                        pk = pks.get(identity or "", "1")
                        path = "/admin" + (
                            route.path.replace("{identity}", identity or "")
                            .replace("{pk:path}", pk).replace("{pk}", pk)
                            .replace("{export_type}", "csv").replace("{column_name}", "id")
                        )
                        data = {"use": "snapshot"}
                        if method == "POST" and role.allows(Role.OPERATOR):
                            data["csrf_token"] = page_csrf_token(
                                client.get(f"/admin/job/details/{JOB_ID}").text
                            )
                        before = stored_job(JOB_ID)
                        response = client.request(
                            method, path, params={"pks": pk} if method == "DELETE" else None,
                            data=data if method == "POST" else None,
                        )
                        statuses[role] = response.status_code
                        assert response.status_code < 500, (role, method, path)
                        if not role.allows(required):
                            assert response.status_code == 403, (role, method, path, required)
                            after = stored_job(JOB_ID)
                            assert (before and before.enabled) == (after and after.enabled)
                            denied += 1
                    for role in ROLES:
                        if role.allows(required) and role != Role.ADMIN:
                            # Allowed: the same answer an admin gets (403 only where the
                            # feature is off for everyone, e.g. export).
                            assert (statuses[role] == 403) == (statuses[Role.ADMIN] == 403), (
                                role, method, route.path, identity, statuses
                            )
                    checked += 1
        assert checked >= 60
        assert denied >= 40
        for client in clients.values():
            if client is not admin:
                client.close()


def test_a_viewer_sees_no_action_and_cannot_post_one(prefect_down: None) -> None:
    app = create_app()
    with TestClient(app, follow_redirects=False) as admin:
        assert login(admin).status_code == 302
        assert create_job(admin).status_code == 302
        log_id = add_log()
        add_user("viewer1", "viewer")
        viewer = logged_in_as(app, "viewer1")
        operator_token = page_csrf_token(admin.get(f"/admin/job/details/{JOB_ID}").text)
        details = viewer.get(f"/admin/job/details/{JOB_ID}").text
        assert "Run now" not in details and "Disable" not in details
        assert "retry-form" not in viewer.get(f"/admin/job-log/details/{log_id}").text
        assert "/admin/user/list" not in viewer.get("/admin/").text
        assert 'href="http://testserver/admin/user/list"' in admin.get("/admin/").text
        # Whatever the page shows, the server refuses: 403, and nothing changes.
        refused = viewer.post(f"/admin/job-log/retry/{log_id}",
                              data={"use": "snapshot", "csrf_token": operator_token})
        assert refused.status_code == 403
        assert viewer.post(f"/admin/job/disable/{JOB_ID}").status_code == 403
        assert stored_job().enabled is True  # type: ignore[union-attr]
        viewer.close()


def test_role_changes_apply_at_once_and_disable_ends_sessions(prefect_down: None) -> None:
    app = create_app()
    with TestClient(app, follow_redirects=False) as admin:
        assert login(admin).status_code == 302
        assert create_job(admin).status_code == 302
        add_user("carol", "viewer")
        carol = logged_in_as(app, "carol")
        assert carol.post(f"/admin/job/disable/{JOB_ID}").status_code == 403
        with session_scope() as session:
            users.set_role(session, "carol", Role.OPERATOR, actor=TEST_ACTOR)
        token = page_csrf_token(carol.get(f"/admin/job/details/{JOB_ID}").text)
        assert carol.post(f"/admin/job/disable/{JOB_ID}",
                          data={"csrf_token": token}).status_code == 303
        assert stored_job().enabled is False  # type: ignore[union-attr]

        with session_scope() as session:
            users.set_disabled(session, "carol", True, actor=TEST_ACTOR)
        assert carol.get("/admin/job/list").status_code == 302  # back to the login
        assert login(carol, "carol", "role-user-password").status_code == 400
        with session_scope() as session:
            users.set_disabled(session, "carol", False, actor=TEST_ACTOR)
        assert login(carol, "carol", "role-user-password").status_code == 302
        with session_scope() as session:
            users.set_password(session, "carol", "another-password", actor=TEST_ACTOR)
        assert carol.get("/admin/job/list").status_code == 302
        assert login(carol, "carol", "another-password").status_code == 302
        carol.close()


def test_the_last_admin_stays(pg_env: None) -> None:
    with session_scope() as session:
        users.create_user(session, "root", Role.ADMIN, "root-password", actor=TEST_ACTOR)
    for change in (lambda s: users.set_role(s, "root", Role.OPERATOR, actor=TEST_ACTOR),
                   lambda s: users.set_disabled(s, "root", True, actor=TEST_ACTOR)):
        with pytest.raises(users.UserError, match="last enabled admin"), \
                session_scope() as session:
            change(session)
    with session_scope() as session:
        users.create_user(session, "second", Role.ADMIN, "second-password", actor=TEST_ACTOR)
    with session_scope() as session:
        assert users.set_role(session, "root", Role.VIEWER, actor=TEST_ACTOR).role == "viewer"


def test_admin_pages_add_and_change_users(prefect_down: None) -> None:
    app = create_app()
    with TestClient(app, follow_redirects=False) as admin:
        assert login(admin).status_code == 302
        created = admin.post("/admin/user/create",
                             data={"username": "Dave", "role": "operator", "password": ""})
        assert created.status_code == 302, created.text[:2000]
        page = admin.get("/admin/user/list").text
        match = re.search(r"One-time password \(shown only now\): (\S+)<", page)
        assert match, page[:3000]
        with TestClient(app, follow_redirects=False) as dave:
            assert login(dave, "dave", match.group(1)).status_code == 302
        with session_scope() as session:
            dave_id = users.get_user(session, "dave").id
            stored = session.get(User, dave_id)
            assert stored is not None and match.group(1) not in stored.password_hash
        edited = admin.post(f"/admin/user/edit/{dave_id}",
                            data={"role": "viewer", "password": "", "disabled": "y"})
        assert edited.status_code == 302, edited.text[:2000]
        with session_scope() as session:
            dave = users.get_user(session, "dave")
            assert (dave.role, dave.disabled) == ("viewer", True)
        short = admin.post("/admin/user/create",
                           data={"username": "eve", "role": "viewer", "password": "short"})
        assert short.status_code == 400
        assert "at least 8 characters" in short.text


def test_first_admin_comes_from_the_settings_once(prefect_down: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(create_app(), follow_redirects=False) as client:
        assert login(client).status_code == 302
    with session_scope() as session:
        assert [(u.username, u.role) for u in users.list_users(session)] == [(USERNAME, "admin")]
        users.set_password(session, USERNAME, "changed-by-the-admin", actor=TEST_ACTOR)
    # A restart does not put ADMIN_PASSWORD back over the password the admin chose.
    with TestClient(create_app(), follow_redirects=False) as client:
        assert login(client).status_code == 400
        assert login(client, password="changed-by-the-admin").status_code == 302


def test_a_running_admin_lets_the_configured_admin_in_after_every_user_is_gone(
    prefect_down: None,
) -> None:
    with TestClient(create_app(), follow_redirects=False) as client:
        with session_scope() as session:
            session.execute(text("DELETE FROM app_user"))
        assert login(client, password="not-the-password").status_code == 400
        assert login(client).status_code == 302  # as at a restart: ADMIN_PASSWORD's admin
    with session_scope() as session:
        assert [(u.username, u.role) for u in users.list_users(session)] == [(USERNAME, "admin")]


def test_the_throttle_is_shared_by_two_admin_processes(pg_env: None, tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PREFECT_API_URL"] = f"http://127.0.0.1:{free_port()}/api"
    first, first_url = start_admin(tmp_path / "first.log", env)
    try:
        second, second_url = start_admin(tmp_path / "second.log", env)
        try:
            for _ in range(4):
                response = httpx.post(f"{first_url}/admin/login",
                                      data={"username": USERNAME, "password": "guess"})
                assert response.status_code == 400
            # The fifth failure, on the other replica, reaches the limit the first one counted.
            fifth = httpx.post(f"{second_url}/admin/login",
                               data={"username": USERNAME, "password": "guess"})
            assert fifth.status_code == 429
            refused = httpx.post(f"{first_url}/admin/login",
                                 data={"username": USERNAME, "password": PASSWORD})
            assert refused.status_code == 429
        finally:
            stop_process(second)
    finally:
        stop_process(first)


def test_users_cli(cli: Cli) -> None:
    added = cli.run("users", "add", "Frank", "--role", "operator")
    assert added.returncode == 0, added.stderr
    password = re.search(r"\(shown only now\): (\S+)", added.stdout).group(1)  # type: ignore[union-attr]
    duplicate = one_line_error(cli.run("users", "add", "frank"))
    assert duplicate.endswith("a user 'frank' already exists")
    assert "unknown role 'chief'" in one_line_error(cli.run("users", "set-role", "frank", "chief"))
    assert "no user 'nobody'" in one_line_error(cli.run("users", "disable", "nobody"))
    piped = subprocess.run(
        [CONNECTHUB, "users", "add", "grace", "--role", "viewer", "--password-stdin"],
        input="grace-password\n", capture_output=True, text=True, env=cli.env(), cwd=cli.cwd,
        timeout=120,
    )
    assert piped.returncode == 0, piped.stderr
    assert "grace-password" not in piped.stdout + piped.stderr
    assert cli.run("users", "set-role", "grace", "admin").returncode == 0
    assert cli.run("users", "disable", "frank").returncode == 0
    listed = cli.run("users", "list").stdout
    assert re.search(r"frank\s+operator\s+disabled", listed), listed
    assert re.search(r"grace\s+admin\s+active", listed), listed
    assert password not in listed
    reset = cli.run("users", "reset-password", "frank")
    new_password = re.search(r"\(shown only now\): (\S+)", reset.stdout).group(1)  # type: ignore[union-attr]
    assert cli.run("users", "enable", "frank").returncode == 0

    # The printed passwords log in to the admin on that database; the old one no longer does.
    with TestClient(create_app(), follow_redirects=False) as client:
        assert login(client, "frank", password).status_code == 400
        assert login(client, "frank", new_password).status_code == 302
        assert login(client, "grace", "grace-password").status_code == 302


def test_a_token_lifetime_is_a_bounded_duration() -> None:
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration(" 12h ") == timedelta(hours=12)
    for duration in ("0d", "30", "1y", "999999w", "522w"):
        with pytest.raises(TokenError, match="expires"):
            parse_duration(duration)
