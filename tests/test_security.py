"""Security of the admin and the exports, beyond what test_admin_http.py already checks
(login on every route, CSRF on Retry and Disable, the basic throttle, cookie flags through the
TestClient, secrets never in a page, a read-only JobLog).

- The session cookie as the real server sets it (`connecthub admin`, uvicorn with proxy
  headers): HttpOnly, SameSite=Lax, a 12 h Max-Age, and Secure when a TLS proxy says the request
  was https (X-Forwarded-Proto). A tampered cookie, or one signed with another secret, is no
  login.
- State changes need a POST: a GET (or HEAD, PUT, PATCH) on any route, the data-changing ones
  included, changes no row and starts no run. Run now, Enable, Disable and Retry refuse a POST
  without the CSRF token of *this* session; Create and Edit refuse a POST from a page of another
  origin that carries no token (SameSite=Lax still sends the cookie from a sibling subdomain).
- Throttling holds on the real server, and writing the username differently does not reset it.
- No way around the encryption or the read-only views: no CSV import of jobs, no Job export,
  no file download of whatever path a column holds (e.g. the key file).
- `connecthub jobs export` (YAML and JSON, on PostgreSQL) never holds a secret value, its
  base64, nor the Fernet token.

No dependency audit here: this machine's package index is a mirror without the vulnerability
API, so pip-audit would report every dependency as "not found" and could not fail.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from itsdangerous import TimestampSigner
from sqlalchemy import text
from starlette.testclient import TestClient

from connecthub.app.admin import views as admin_views
from connecthub.app.admin.auth import SESSION_COOKIE
from connecthub.app.main import create_app
from connecthub.core.config import get_settings
from connecthub.db import crud, users
from connecthub.db.engine import get_engine, session_scope
from connecthub.jobs.spec import JobSpec
from deployments.client import PrefectUnavailableError
from tests.support.admin import (
    PASSWORD,
    SECRET_VALUE,
    USERNAME,
    RecordingClient,
    add_log,
    admin_routes,
    create_job,
    job_form,
    login,
    page_csrf_token,
    stored_job,
)
from tests.support.processes import CLI, free_port, start_admin, stop_process

JOB_ID = "example.hello"  # job_form's id


def database_state() -> dict[str, list[tuple]]:
    """Every job, and the JobLog rows of the jobs these tests create. (Runs of jobs that other
    engine tests left deployed may still add JobLog rows of their own meanwhile.)"""
    with get_engine().connect() as connection:
        return {
            "job": [
                tuple(row) for row in connection.execute(text("SELECT * FROM job ORDER BY id"))
            ],
            "job_log": [tuple(row) for row in connection.execute(text(
                "SELECT * FROM job_log WHERE job_id IN ('example.hello', 'planted.job', "
                "'imported.job') ORDER BY id"
            ))],
        }


class RecordedRuns:
    """Stands in for deployments.runs in the admin: records every run and retry it is asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def run_now(self, *args: Any) -> Any:
        self.calls.append(("run_now", args))
        raise PrefectUnavailableError("recorded, not started")

    def retry(self, *args: Any) -> Any:
        self.calls.append(("retry", args))
        raise PrefectUnavailableError("recorded, not started")


@pytest.fixture
def recorded_runs(monkeypatch: pytest.MonkeyPatch) -> RecordedRuns:
    recorder = RecordedRuns()
    monkeypatch.setattr(admin_views, "runs", recorder)
    return recorder


# --- the real server: cookie flags behind a TLS proxy, and the throttle ----------------------


@pytest.fixture
def admin_server(pg_env: None, tmp_path: Path) -> Iterator[str]:
    """`connecthub admin` (uvicorn with proxy headers, as compose runs it), Prefect down."""
    log_path = tmp_path / "admin.log"
    env = dict(os.environ)
    env["PREFECT_API_URL"] = f"http://127.0.0.1:{free_port()}/api"
    env.pop("PREFECT_UI_URL", None)
    process, base_url = start_admin(log_path, env)
    try:
        yield base_url
    finally:
        stop_process(process)
        log_text = log_path.read_text(errors="replace")
        assert "Traceback" not in log_text, log_text[-3000:]


def cookie_attributes(response: httpx.Response) -> dict[str, str]:
    (header,) = [v for k, v in response.headers.multi_items() if k.lower() == "set-cookie"]
    name_value, *attributes = [part.strip() for part in header.split(";")]
    assert name_value.startswith(f"{SESSION_COOKIE}=")
    parsed = {}
    for attribute in attributes:
        key, _, value = attribute.partition("=")
        parsed[key.lower()] = value
    return parsed


def test_session_cookie_is_secure_behind_a_tls_proxy(admin_server: str) -> None:
    credentials = {"username": USERNAME, "password": PASSWORD}
    cases = (({"X-Forwarded-Proto": "https"}, True), ({}, False),
             ({"X-Forwarded-Proto": "http"}, False))
    for headers, secure in cases:
        with httpx.Client(base_url=admin_server, follow_redirects=False, timeout=30) as http:
            response = http.post("/admin/login", data=credentials, headers=headers)
            assert response.status_code == 302, response.text
            attributes = cookie_attributes(response)
            assert ("secure" in attributes) is secure, (headers, attributes)
            assert "httponly" in attributes
            assert attributes["samesite"].lower() == "lax"
            assert attributes["path"] == "/"
            assert attributes["max-age"] == str(12 * 3600)
            if secure:  # uvicorn took the scheme from the trusted proxy
                assert response.headers["location"].startswith("https://")
            # The cookie is the login (sent back as the browser would, over https if Secure).
            cookie = f"{SESSION_COOKIE}={response.cookies[SESSION_COOKIE]}"
            listing = httpx.get(f"{admin_server}/admin/job/list", timeout=30,
                                headers={**headers, "Cookie": cookie})
            assert listing.status_code == 200


def test_throttle_holds_on_the_real_server_whatever_the_spelling(admin_server: str) -> None:
    with httpx.Client(base_url=admin_server, follow_redirects=False, timeout=30) as http:
        statuses = []
        for username in ("admin", "ADMIN", " admin", "Admin ", "aDmIn"):
            response = http.post("/admin/login", data={"username": username, "password": "guess"})
            statuses.append(response.status_code)
        assert statuses == [400, 400, 400, 400, 429], statuses
        # Now even the right password, however the username is written, is refused...
        for username in (USERNAME, USERNAME.upper(), f"  {USERNAME}  "):
            refused = http.post("/admin/login", data={"username": username, "password": PASSWORD})
            assert refused.status_code == 429, (username, refused.status_code)
            assert "Too many failed logins" in refused.text
            assert SESSION_COOKIE not in refused.cookies
        assert http.get("/admin/job/list").status_code == 302  # ...and nobody is logged in
        # Another username from the same address is not affected.
        other = http.post("/admin/login", data={"username": "operator2", "password": "x"})
        assert other.status_code == 400


def signed_cookie(session: dict[str, Any], secret: str) -> str:
    """A session cookie as Starlette's SessionMiddleware writes one."""
    data = base64.b64encode(json.dumps(session).encode())
    return TimestampSigner(secret).sign(data).decode()


@pytest.mark.usefixtures("prefect_down")
def test_tampered_or_foreign_cookie_is_no_login() -> None:
    secret = os.environ["SESSION_SECRET"]
    with TestClient(create_app(), follow_redirects=False) as http:
        assert login(http).status_code == 302
        genuine = http.cookies[SESSION_COOKIE]
        assert http.get("/admin/job/list").status_code == 200
        payload, _, signature = genuine.partition(".")
        tampered = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
        with session_scope() as session:
            admin_id = users.get_user(session, USERNAME).id
        # What a login puts in the session: the user's id and when the session began.
        session_of = {"user_id": admin_id, "started": time.time()}
        cookies = {
            "forged with the right secret (control)": signed_cookie(session_of, secret),
            "tampered payload": f"{tampered}.{signature}",
            "signed with another secret": signed_cookie(session_of, "x" * 48),
            "unsigned": base64.b64encode(json.dumps(session_of).encode()).decode(),
            "another user": signed_cookie({**session_of, "user_id": admin_id + 1000}, secret),
            "begun before the user's sessions were ended": signed_cookie(
                {**session_of, "started": time.time() - 3600}, secret
            ),
        }
        for name, cookie in cookies.items():
            http.cookies.clear()
            http.cookies.set(SESSION_COOKIE, cookie)
            status = http.get("/admin/job/list").status_code
            expected = 200 if name.endswith("(control)") else 302
            assert status == expected, (name, status)


# --- state changes: POST only, with this session's CSRF token ----------------------------------


# Admin routes of ConnectHub's own whose GET shows a form (the change is its POST).
FORM_ROUTES = {"view-job-run_with_params"}


def test_no_route_changes_anything_on_get(
    admin: RecordingClient, recorded_runs: RecordedRuns
) -> None:
    assert create_job(admin).status_code == 302
    log_id = add_log()
    routes = admin_routes()
    changing = {route.name for route in routes if set(route.methods or ()) - {"GET", "HEAD"}}
    assert changing == {
        "create", "edit", "delete", "import", "login", "view-job-run_job_now",
        "view-job-enable_job", "view-job-disable_job", "view-job-log-retry_execution",
        "view-job-run_with_params", "view-api-token-revoke_token",
    }, changing
    ours = [route for route in routes if route.name.startswith("view-")]
    # Actions are POST only; a form page (GET) posts to itself.
    assert all(set(route.methods or ()) - {"GET", "HEAD"} == {"POST"} for route in ours)
    assert {route.name for route in ours if "GET" in (route.methods or ())} == FORM_ROUTES

    before = database_state()
    checked = 0
    for route in routes:
        if route.name == "logout":
            continue
        for identity in (("job", "job-log") if "{identity}" in route.path else ("",)):
            path = route.path.replace("{identity}", identity)
            pk = str(log_id) if path.startswith("/job-log") else JOB_ID
            path = (path.replace("{pk:path}", pk).replace("{pk}", pk)
                    .replace("{export_type}", "csv").replace("{column_name}", "description"))
            for method in ("GET", "HEAD", "PUT", "PATCH"):
                response = admin.request(method, f"/admin{path}",
                                         params={"pks": pk, "use": "snapshot"})
                assert response.status_code < 500, (method, path, response.status_code)
                refused = route.name in ("delete", "import") or (
                    route.name.startswith("view-")
                    and (route.name not in FORM_ROUTES or method in ("PUT", "PATCH"))
                )
                if refused:
                    assert response.status_code == 405, (method, path, response.status_code)
                checked += 1
    assert checked >= 60
    assert database_state() == before
    assert stored_job().enabled is True  # type: ignore[union-attr]
    assert recorded_runs.calls == []

    # Control: the same actions as POSTs with the token do reach the engine and the database.
    token = page_csrf_token(admin.get(f"/admin/job/details/{JOB_ID}").text)
    admin.post(f"/admin/job/run/{JOB_ID}", data={"csrf_token": token})
    admin.post(f"/admin/job-log/retry/{log_id}", data={"csrf_token": token, "use": "snapshot"})
    assert [name for name, _args in recorded_runs.calls] == ["run_now", "retry"]
    admin.post(f"/admin/job/disable/{JOB_ID}", data={"csrf_token": token})
    assert stored_job().enabled is False  # type: ignore[union-attr]


ACTIONS = {
    "run now": ("/admin/job/run/{job}", {}),
    "enable": ("/admin/job/enable/{job}", {}),
    "disable": ("/admin/job/disable/{job}", {}),
    "retry": ("/admin/job-log/retry/{log}", {"use": "snapshot"}),
}


def other_sessions_token(app: Any) -> str:
    with TestClient(app, follow_redirects=False) as other:
        assert login(other).status_code == 302
        return page_csrf_token(other.get(f"/admin/job/details/{JOB_ID}").text)


@pytest.mark.parametrize(
    ("action", "token_kind"),
    [("run now", "missing"), ("run now", "forged"), ("enable", "missing"), ("enable", "forged"),
     ("run now", "empty")]
    + [(action, "another session's") for action in ACTIONS],
)
def test_actions_need_this_sessions_csrf_token(
    admin: RecordingClient, recorded_runs: RecordedRuns, action: str, token_kind: str
) -> None:
    assert create_job(admin).status_code == 302
    log_id = add_log()
    token = page_csrf_token(admin.get(f"/admin/job/details/{JOB_ID}").text)
    if action == "enable":  # so that Enable would change something
        admin.post(f"/admin/job/disable/{JOB_ID}", data={"csrf_token": token})
        assert stored_job().enabled is False  # type: ignore[union-attr]
    bad_token = {
        "missing": None,
        "forged": "forged-" + token[7:],
        "empty": "",
        "another session's": other_sessions_token(admin.app),
    }[token_kind]
    assert bad_token != token
    path_template, extra = ACTIONS[action]
    path = path_template.format(job=JOB_ID, log=log_id)
    data = dict(extra)
    if bad_token is not None:
        data["csrf_token"] = bad_token
    before = database_state()

    refused = admin.post(path, data=data)
    assert refused.status_code == 403, (refused.status_code, refused.text[:500])
    assert database_state() == before
    assert recorded_runs.calls == []

    # Control: with this session's token the same POST goes through.
    accepted = admin.post(path, data={**extra, "csrf_token": token})
    assert accepted.status_code == 303
    changed = bool(recorded_runs.calls) or database_state() != before
    assert changed, f"{action} with the right token changed nothing"


@pytest.mark.parametrize("form_action", ["create", "edit"])
def test_create_and_edit_refuse_a_post_from_another_origin(
    admin: RecordingClient, form_action: str
) -> None:
    """SameSite=Lax keeps the cookie off cross-site POSTs, but not off POSTs from a sibling
    subdomain (same site, other origin): from there a page could re-point a job's base_url at
    itself and receive the job's token on the next run. Create and Edit must refuse a POST that
    comes from another origin without the session's token (as Run now and Retry do)."""
    assert create_job(admin).status_code == 302
    before = database_state()
    if form_action == "create":
        path, form = "/admin/job/create", job_form(id="planted.job", secret_cfg="")
    else:
        path = f"/admin/job/edit/{JOB_ID}"
        form = job_form(public_cfg='{"name": "Mars", "base_url": "https://evil.example.com"}',
                        secret_cfg="")
    origin = {"Origin": "https://evil.example.com", "Referer": "https://evil.example.com/x"}
    forged = admin.post(path, data=form, headers={**origin, "Sec-Fetch-Site": "same-site"})
    refused = forged.status_code in (400, 403) or (
        forged.status_code == 302 and forged.headers["location"].endswith("/admin/login")
    )
    assert refused, (forged.status_code, forged.headers.get("location"))
    assert database_state() == before

    # Control: the admin's own form page, submitted from the admin's origin, still works.
    page = admin.get(path).text
    token = page_csrf_token(page) if 'name="csrf_token"' in page else None
    own = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    accepted = admin.post(path, data={**form, **({"csrf_token": token} if token else {})},
                          headers=own)
    assert accepted.status_code == 302, accepted.text[-2000:]
    assert database_state() != before


# --- no way around the encryption or the read-only views -------------------------------------


def test_no_csv_import_and_no_job_export(admin: RecordingClient) -> None:
    assert create_job(admin).status_code == 302
    before = database_state()
    csv = ("id,name,cron_expr,handler_path,secret_cfg\n"
           f'imported.job,x,* * * * *,extensions.example.job:ExampleJob,"{{""token"": '
           f'""{SECRET_VALUE}""}}"\n')
    for identity in ("job", "job-log"):
        response = admin.post(f"/admin/{identity}/import",
                              files={"file": ("jobs.csv", csv.encode(), "text/csv")})
        assert response.status_code in (403, 404, 405), (identity, response.status_code)
    assert database_state() == before
    token = stored_job().secret_cfg  # type: ignore[union-attr]
    for export_type in ("csv", "json"):
        response = admin.get(f"/admin/job/export/{export_type}")
        assert response.status_code in (403, 404), (export_type, response.status_code)
        assert token not in response.text  # type: ignore[operator]
    listing = admin.get("/admin/job/list").text
    assert "/admin/job/export" not in listing and "/admin/job/import" not in listing


def test_no_file_download_of_what_a_column_names(
    admin: RecordingClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLAdmin serves, for any column, the file whose path the column holds (if it is under the
    working directory). In the embedded mode the working directory holds data/fernet.key, the
    database and .env: a job described as "data/fernet.key" must not hand out the key."""
    assert create_job(admin).status_code == 302  # with a secret: the key file exists
    settings = get_settings()
    key_path = settings.key_path.resolve()
    assert key_path.is_file()
    monkeypatch.chdir(settings.data_dir.resolve().parent)
    relative = os.path.relpath(key_path)
    assert not relative.startswith("..")
    response = admin.post(f"/admin/job/edit/{JOB_ID}",
                          data=job_form(description=relative, name=relative, secret_cfg=""))
    assert response.status_code == 302, response.text[-2000:]
    log_id = add_log(error=relative)
    key = key_path.read_text().strip()
    for path in (f"/admin/job/{JOB_ID}/description/download/",
                 f"/admin/job/{JOB_ID}/name/preview/",
                 f"/admin/job-log/{log_id}/error/download/"):
        served = admin.get(path)
        leaked = key in served.text  # (not compared in the assertion: it would print the key)
        assert not leaked, f"{path} served the Fernet key file"
        assert served.status_code in (403, 404), (path, served.status_code)


# --- jobs export -----------------------------------------------------------------------------


def test_jobs_export_never_holds_a_secret(pg_env: None, tmp_path: Path) -> None:
    secrets = {"token": "exp-token-4c1e9a", "nested": {"password": "exp-pw-77b2",
                                                       "keys": ["exp-key-1f0d", 918273645]}}
    with session_scope() as session:
        crud.save_job(session, JobSpec(
            id="export.secret", cron_expr="*/5 * * * *",
            handler_path="extensions.example.job:ExampleJob", secret_cfg=secrets,
        ))
        crud.save_job(session, JobSpec(
            id="export.plain", cron_expr="@daily",
            handler_path="extensions.example.job:ExampleJob", public_cfg={"name": "Venus"},
        ))
        (token,) = crud.secret_tokens(session)
    values = ["exp-token-4c1e9a", "exp-pw-77b2", "exp-key-1f0d", "918273645"]
    needles = [token, token[:24], "secret_cfg"]
    for value in values:
        needles.append(value)
        needles.append(base64.b64encode(value.encode()).decode().rstrip("="))
        needles.append(base64.urlsafe_b64encode(value.encode()).decode().rstrip("="))
    env = dict(os.environ)
    env["PREFECT_API_URL"] = f"http://127.0.0.1:{free_port()}/api"
    results = {
        fmt: subprocess.run([*CLI, "jobs", "export", "--format", fmt], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
        for fmt in ("yaml", "json")
    }
    for fmt, result in results.items():
        assert result.returncode == 0, result.stderr
        output = result.stdout + result.stderr
        assert "export.secret" in output and "export.plain" in output and "Venus" in output
        for needle in needles:
            assert needle not in output, (fmt, needle)
    exported = json.loads(results["json"].stdout)
    assert [entry["id"] for entry in exported] == ["export.plain", "export.secret"]
    assert all("secret_cfg" not in entry for entry in exported)
