"""The audit trail: an entry for every kind of change and every login, through the entry
point that makes it (admin, API, CLI), naming who, from where and what changed; never a secret;
append-only in the database; listed and filtered in the admin, by the API and by
`connecthub audit`.
"""

from __future__ import annotations

import json
import sqlite3
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from starlette.testclient import TestClient

from connecthub.app.api import runs as api_runs
from connecthub.app.main import API_PREFIX, create_app
from connecthub.db import audit, crud, tokens
from connecthub.db.engine import get_engine, session_scope
from connecthub.db.models import AuditEntry
from tests.support.admin import (
    SECRET_VALUE,
    TEST_ACTOR,
    USERNAME,
    add_log,
    add_user,
    create_job,
    job_form,
    login,
    page_csrf_token,
)
from tests.support.cli import Cli, save_jobs

JOB_ID = "example.hello"
# Which test makes each kind of entry: together they make every kind there is.
WEB_ACTIONS = {
    "login.success", "login.failure", "job.create", "job.update", "job.disable", "job.enable",
    "job.run", "joblog.retry", "job.delete", "alert_channel.add", "alert_channel.delete",
    "user.create", "user.role", "user.disable", "user.enable", "user.password", "token.create",
    "token.revoke",
}
CLI_ACTIONS = {
    "user.create", "user.role", "user.disable", "user.enable", "user.password", "token.create",
    "token.revoke", "job.create", "job.update", "job.delete", "alert_channel.add",
    "alert_channel.delete", "key.rotate", "key.retire",
}


def test_the_tests_cover_every_kind_of_entry() -> None:
    assert set(audit.ACTIONS) == WEB_ACTIONS | CLI_ACTIONS


def entries() -> list[AuditEntry]:
    with session_scope() as session:
        rows = list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
        session.expunge_all()
        return rows


class StartedRuns:
    """Stands in for deployments.runs: a run or retry that started as JobLog #500."""

    def run_now(self, *_args: Any) -> Any:
        return SimpleNamespace(id=500, status="PENDING")

    def retry(self, *_args: Any) -> Any:
        return SimpleNamespace(id=501, status="PENDING")


def test_every_change_in_the_admin_and_the_api_is_recorded(
    prefect_down: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connecthub.app.admin import views as admin_views

    monkeypatch.setattr(admin_views, "runs", StartedRuns())
    monkeypatch.setattr(api_runs, "runs", StartedRuns())
    app = create_app()
    with TestClient(app, follow_redirects=False) as admin:
        assert login(admin, password="wrong-password").status_code == 400
        assert login(admin).status_code == 302
        assert create_job(admin).status_code == 302
        edited = admin.post(f"/admin/job/edit/{JOB_ID}", data=job_form(
            cron_expr="0 * * * *", secret_cfg=json.dumps({"token": "a-new-secret-value"}),
        ))
        assert edited.status_code == 302
        token = page_csrf_token(admin.get(f"/admin/job/details/{JOB_ID}").text)
        assert admin.post(f"/admin/job/disable/{JOB_ID}",
                          data={"csrf_token": token}).status_code == 303
        assert admin.post(f"/admin/job/enable/{JOB_ID}",
                          data={"csrf_token": token}).status_code == 303
        assert admin.post(f"/admin/job/run/{JOB_ID}",
                          data={"csrf_token": token}).status_code == 303
        log_id = add_log()
        assert admin.post(f"/admin/job-log/retry/{log_id}",
                          data={"csrf_token": token, "use": "current"}).status_code == 303
        added = admin.post("/admin/alert-channel/create", data={
            "name": "ops", "url": "json://user:channel-password@localhost:9/hook",
            "is_default": "y"})
        assert added.status_code == 302, added.text[:1000]
        assert admin.delete("/admin/alert-channel/delete", params={"pks": "ops"}).status_code \
            == 200
        assert admin.post("/admin/user/create", data={
            "username": "erin", "role": "viewer", "password": "erin-password"}).status_code == 302
        with session_scope() as session:
            erin_id = session.execute(text("SELECT id FROM app_user WHERE username = 'erin'"))\
                .scalar_one()
        assert admin.post(f"/admin/user/edit/{erin_id}", data={
            "role": "operator", "disabled": "y", "password": "erin-new-password"}
        ).status_code == 302
        assert admin.post(f"/admin/user/edit/{erin_id}", data={
            "role": "operator", "password": ""}).status_code == 302  # enabled again
        created = admin.post("/admin/api-token/create",
                             data={"username": "erin", "name": "ci", "expires": "1d"})
        assert created.status_code == 302
        assert admin.post("/admin/api-token/revoke/1",
                          data={"csrf_token": token}).status_code == 303

        # Through the API, as the admin's token: the actor names the token.
        with session_scope() as session:
            row, api_token = tokens.create_token(session, USERNAME, actor=TEST_ACTOR)
        headers = {"Authorization": f"Bearer {api_token}"}
        ran = admin.post(f"{API_PREFIX}/jobs/{JOB_ID}/runs", headers=headers,
                         json={"params": {"name": "Venus"}})
        assert ran.status_code == 202, ran.text
        assert admin.delete(f"{API_PREFIX}/jobs/{JOB_ID}", headers=headers).status_code == 204

    found = entries()
    assert {entry.action for entry in found} == WEB_ACTIONS
    by_action: dict[str, list[AuditEntry]] = {}
    for entry in found:
        by_action.setdefault(entry.action, []).append(entry)
    failure = by_action["login.failure"][0]
    assert (failure.actor, failure.address) == (USERNAME, "testclient")
    (update,) = by_action["job.update"]
    assert update.actor == USERNAME and update.target == JOB_ID
    assert update.details == {"changes": {
        "cron_expr": {"from": "* * * * *", "to": "0 * * * *"}, "secret_cfg": "changed",
    }}
    assert by_action["job.create"][0].details["changes"]["secret_cfg"] == "changed"
    assert by_action["job.run"][0].details == {"log_id": 500, "with_params": False}
    api_run = by_action["job.run"][1]
    assert api_run.actor == f"{USERNAME} (token #{row.id})"
    assert api_run.details == {"log_id": 500, "with_params": True}
    assert by_action["joblog.retry"][0].details == {"use": "current", "log_id": 501}
    (deleted,) = by_action["job.delete"]
    assert deleted.actor == f"{USERNAME} (token #{row.id})"
    assert deleted.details["changes"]["cron_expr"] == {"from": "0 * * * *", "to": None}
    assert [e.details for e in by_action["user.role"]] == [{"from": "viewer", "to": "operator"}]

    # Nothing secret in any entry: not the values, not their Fernet tokens, not a password.
    dumped = json.dumps([[e.actor, e.target, e.details] for e in found], default=str)
    for secret in (SECRET_VALUE, "a-new-secret-value", "channel-password", "erin-password",
                   "erin-new-password", api_token, "test-admin-password"):
        assert secret not in dumped
    assert "gAAAAA" not in dumped


def test_the_trail_is_append_only(pg_env: None) -> None:
    with session_scope() as session:
        audit.record(session, TEST_ACTOR, "key.rotate", "fernet.key")
    for statement in ("UPDATE audit_entry SET actor = 'someone else'", "DELETE FROM audit_entry"):
        with pytest.raises(DBAPIError, match="append-only"), get_engine().begin() as conn:
            conn.execute(text(statement))
    assert [entry.actor for entry in entries()] == ["test"]
    with pytest.raises(ValueError, match="unknown audit action"), session_scope() as session:
        audit.record(session, TEST_ACTOR, "job.renamed")


def test_admin_page_and_api_list_and_filter_the_trail(prefect_down: None) -> None:
    app = create_app()
    with TestClient(app, follow_redirects=False) as admin:
        assert login(admin).status_code == 302
        assert create_job(admin).status_code == 302
        add_user("viewer1", "viewer")
        with session_scope() as session:
            for index in range(4):
                audit.record(session, TEST_ACTOR, "key.rotate", f"key-{index}")
            _row, admin_token = tokens.create_token(session, USERNAME, actor=TEST_ACTOR)
            _row, viewer_token = tokens.create_token(session, "viewer1", actor=TEST_ACTOR)
        page = admin.get("/admin/audit-entry/list", params={"action": "job.create"}).text
        assert f">{JOB_ID}<" in page and "key-0" not in page
        searched = admin.get("/admin/audit-entry/list", params={"search": "key-2"}).text
        assert "key-2" in searched and "key-1" not in searched
        assert admin.post("/admin/audit-entry/create", data={}).status_code == 403
        with TestClient(app, follow_redirects=False) as viewer:
            assert login(viewer, "viewer1", "role-user-password").status_code == 302
            assert viewer.get("/admin/audit-entry/list").status_code == 403

        headers = {"Authorization": f"Bearer {admin_token}"}
        first = admin.get(f"{API_PREFIX}/audit", headers=headers,
                          params={"action": "key.rotate", "limit": 3}).json()
        assert [item["target"] for item in first["items"]] == ["key-3", "key-2", "key-1"]
        rest = admin.get(f"{API_PREFIX}/audit", headers=headers, params={
            "action": "key.rotate", "limit": 3, "cursor": first["next_cursor"]}).json()
        assert [item["target"] for item in rest["items"]] == ["key-0"]
        assert rest["next_cursor"] is None
        by_target = admin.get(f"{API_PREFIX}/audit", headers=headers,
                              params={"target": JOB_ID}).json()["items"]
        assert [item["action"] for item in by_target] == ["job.create"]
        assert admin.get(f"{API_PREFIX}/audit", headers={
            "Authorization": f"Bearer {viewer_token}"}).status_code == 403


def test_cli_changes_are_recorded_and_listed(cli: Cli, tmp_path: Any) -> None:
    def ok(*args: str) -> str:
        result = cli.run(*args)
        assert result.returncode == 0, (args, result.stderr)
        return result.stdout

    save_jobs({"a.job": {"token": "alpha-secret-1"}})
    jobs_file = tmp_path / "jobs.yaml"
    jobs_file.write_text(
        "- id: b.job\n  handler_path: extensions.example.job:ExampleJob\n"
        "  cron_expr: '*/5 * * * *'\n  secret_cfg: {token: beta-secret-2}\n"
    )
    ok("jobs", "apply", str(jobs_file), "--no-sync")
    jobs_file.write_text(jobs_file.read_text().replace("*/5", "*/10"))
    ok("jobs", "apply", str(jobs_file), "--no-sync")
    ok("jobs", "delete", "b.job")
    ok("alerts", "add", "ops", "json://localhost:9/hook")
    ok("alerts", "delete", "ops")
    ok("users", "add", "ivy", "--role", "viewer")
    ok("users", "set-role", "ivy", "operator")
    ok("users", "disable", "ivy")
    ok("users", "enable", "ivy")
    ok("users", "reset-password", "ivy")
    ok("tokens", "create", "--user", "ivy")
    ok("tokens", "revoke", "1")
    ok("rotate-key")
    ok("rotate-key", "--retire-old")

    lines = [json.loads(line) for line in ok("audit", "--json", "--limit", "100").splitlines()]
    assert {line["action"] for line in lines} == CLI_ACTIONS
    assert all(line["actor"].startswith("cli:") and line["address"] == "local"
               for line in lines)
    updates = [line for line in lines if line["action"] == "job.update"]
    assert updates[0]["details"] == {"changes": {
        "cron_expr": {"from": "*/5 * * * *", "to": "*/10 * * * *"}, "secret_cfg": "changed",
    }}
    assert lines[0]["action"] == "key.retire"  # newest first
    only = ok("audit", "--action", "user.role").splitlines()
    assert len(only) == 1 and "ivy" in only[0] and '"to": "operator"' in only[0]
    assert "unknown action" in cli.run("audit", "--action", "nope").stderr
    everything = ok("audit", "--json", "--limit", "100")
    for secret in ("alpha-secret-1", "beta-secret-2", "gAAAAA"):
        assert secret not in everything

    # SQLite refuses changes to the trail too.
    with sqlite3.connect(cli.db_path) as conn, pytest.raises(sqlite3.DatabaseError,
                                                               match="append-only"):
        conn.execute("DELETE FROM audit_entry")
    with session_scope() as session:
        assert crud.list_jobs(session)[0].id == "a.job"
