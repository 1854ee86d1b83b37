"""The admin over HTTP: login and its throttle, the session cookie, every route behind the login,
Job validation on the form, secrets that never come back, CSRF on every action, a read-only and
count-capped JobLog.

Prefect is unreachable in these tests (PREFECT_API_URL points at a closed port): saves must stand
and record the sync error, and run/retry must say what went wrong without changing anything.
"""

from __future__ import annotations

import html
import json
import re
import stat
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.routing import Route
from starlette.testclient import TestClient

from connecthub.app import job_changes
from connecthub.app.admin import auth as admin_auth
from connecthub.app.admin import views as admin_views
from connecthub.app.admin.auth import LoginThrottle, load_credentials
from connecthub.app.main import create_app
from connecthub.core.config import Settings, get_settings
from connecthub.db.engine import get_engine, session_scope
from connecthub.db.models import Job, JobLog, utcnow
from connecthub.jobs.vocabulary import RunStatus
from connecthub.security.fernet import decrypt_json
from tests.support.admin import (
    HANDLER,
    SECRET_VALUE,
    RecordingClient,
    add_log,
    admin_routes,
    create_job,
    field_error,
    field_group,
    job_count,
    job_form,
    login,
    page_csrf_token,
    stored_job,
)
from tests.support.jobs import stored_defaults


def edit_job(client: TestClient, job_id: str = "example.hello", **overrides: str) -> Any:
    form = job_form(id=job_id, **overrides)
    return client.post(f"/admin/job/edit/{job_id}", data=form)


def log_count() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(JobLog)) or 0


def flashes(client: TestClient, path: str) -> str:
    return html.unescape(client.get(path).text)


# --- login, session, routes ---------------------------------------------------------------


def _concrete_paths(route: Route) -> list[str]:
    path = route.path
    identities = ["job", "job-log"] if "{identity}" in path else [None]
    paths = []
    for identity in identities:
        concrete = path if identity is None else path.replace("{identity}", identity)
        concrete = re.sub(r"\{pk(:path)?\}", "1", concrete)
        concrete = concrete.replace("{export_type}", "csv").replace("{column_name}", "id")
        assert "{" not in concrete, f"unexpected path parameter in {path}"
        paths.append(concrete)
    return paths


def test_every_admin_route_needs_a_login(anonymous: RecordingClient) -> None:
    add_log()
    routes = admin_routes()
    exposed = {route.path for route in routes if route.name.startswith("view-")}
    assert {"/job/run/{pk}", "/job/enable/{pk}", "/job/disable/{pk}", "/job-log/retry/{pk}"} <= (
        exposed
    )
    checked = 0
    for route in routes:
        if route.name == "login":
            continue
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            for path in _concrete_paths(route):
                response = anonymous.request(method, f"/admin{path}", data={"x": "1"})
                assert response.status_code in (302, 303), (method, path, response.status_code)
                assert response.headers["location"].endswith("/admin/login"), (method, path)
                checked += 1
    assert checked >= 25
    assert log_count() == 1
    assert anonymous.get("/admin/login").status_code == 200
    assert anonymous.get("/healthz").json() == {"status": "ok"}


def test_login_good_and_bad(anonymous: RecordingClient) -> None:
    bad = login(anonymous, password="wrong-password")
    assert bad.status_code == 400
    assert "Invalid credentials" in bad.text
    assert anonymous.get("/admin/job/list").status_code == 302

    good = login(anonymous)
    assert good.status_code == 302
    assert anonymous.get("/admin/job/list").status_code == 200

    anonymous.get("/admin/logout")
    assert anonymous.get("/admin/job/list").status_code == 302


def test_session_cookie_flags(prefect_down: None) -> None:
    app = create_app()
    for base_url, secure in (("http://testserver", False), ("https://testserver", True)):
        with TestClient(app, base_url=base_url, follow_redirects=False) as client:
            response = login(client)
            assert response.status_code == 302
            cookie = response.headers["set-cookie"].lower()
            assert "httponly" in cookie
            assert "samesite=lax" in cookie
            assert ("secure" in cookie) is secure


def test_repeated_failed_logins_are_throttled(anonymous: RecordingClient) -> None:
    for _ in range(4):
        assert login(anonymous, password="guess").status_code == 400
    fifth = login(anonymous, password="guess")
    assert fifth.status_code == 429
    assert "Too many failed logins" in html.unescape(fifth.text)
    # While throttled even the right password is refused, so guessing cannot go on.
    throttled = login(anonymous)
    assert throttled.status_code == 429
    assert re.search(r"Wait \d+ seconds", throttled.text)
    # Another username from the same address is not affected.
    assert login(anonymous, username="someone-else", password="x").status_code == 400


def test_throttle_waits_grow_and_clear_on_success(pg_env: None) -> None:
    now = [1000.0]
    throttle = LoginThrottle(max_failures=5, base_delay_seconds=30, clock=lambda: now[0])
    key = ("10.0.0.1", "admin")
    for _ in range(5):
        assert throttle.retry_after(key) == 0
        throttle.failed(key)
    assert throttle.retry_after(key) == 30
    now[0] += 31
    assert throttle.retry_after(key) == 0
    throttle.failed(key)
    assert throttle.retry_after(key) == 60
    throttle.succeeded(key)
    assert throttle.retry_after(key) == 0


def test_throttle_counts_an_address_over_all_usernames(pg_env: None) -> None:
    now = [1000.0]
    throttle = LoginThrottle(max_failures=5, max_failures_per_address=20,
                             base_delay_seconds=30, clock=lambda: now[0])
    target = ("10.0.0.1", "admin")
    for _ in range(5):
        throttle.failed(target)
    assert throttle.retry_after(target) == 30
    # Guessing on through other usernames does not help: the address itself is throttled
    # after 20 failures.
    for index in range(15):
        throttle.failed(("10.0.0.1", f"user{index}"))
    assert throttle.retry_after(("10.0.0.1", "anyone")) == 30
    for index in range(100):
        throttle.failed(("10.0.0.1", f"other{index}"))
    assert throttle.retry_after(target) > 0
    # Other addresses are not affected, and a success clears the address.
    assert throttle.retry_after(("10.0.0.2", "admin")) == 0
    throttle.succeeded(target)
    assert throttle.retry_after(("10.0.0.1", "anyone")) == 0


def test_password_is_generated_once_into_the_data_dir(
    prefect_down: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("ADMIN_PASSWORD")
    monkeypatch.delenv("SESSION_SECRET")
    get_settings.cache_clear()
    data_dir = get_settings().data_dir
    for name in ("admin-password", "session-secret"):
        (data_dir / name).unlink(missing_ok=True)
    try:
        with (
            caplog.at_level("INFO", logger="connecthub"),
            TestClient(create_app(), follow_redirects=False) as client,
        ):
            password_file = data_dir / "admin-password"
            assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
            assert stat.S_IMODE((data_dir / "session-secret").stat().st_mode) == 0o600
            password = password_file.read_text().strip()
            assert len(password) >= 16
            assert str(password_file) in caplog.text
            assert password not in caplog.text
            assert login(client, password=password).status_code == 302
            assert client.get("/admin/job/list").status_code == 200
        # A second start reads the same password.
        settings = Settings(data_dir=data_dir, admin_password=None)
        assert load_credentials(settings).password == password
    finally:
        for name in ("admin-password", "session-secret"):
            (data_dir / name).unlink(missing_ok=True)


def test_placeholder_session_secret_is_refused(tmp_path: Any) -> None:
    settings = Settings(data_dir=tmp_path, session_secret="change-me")
    with pytest.raises(admin_auth.AdminConfigError, match="SESSION_SECRET"):
        admin_auth.load_session_secret(settings)


# --- jobs: create, validate, secrets ------------------------------------------------------


def test_create_job_encrypts_the_secret_and_never_shows_it(client: RecordingClient) -> None:
    response = create_job(client)
    assert response.status_code == 302, response.text
    job = stored_job()
    assert job is not None
    assert job.secret_cfg is not None and job.secret_cfg.startswith("gAAAA")
    assert SECRET_VALUE not in job.secret_cfg
    assert decrypt_json(job.secret_cfg) == {"token": SECRET_VALUE}
    assert job.public_cfg == {"name": "Mars"}
    assert job.tags == ["demo"]
    # Prefect is down: the save stands, the row records why it is not synced, a warning says so.
    assert job.sync_error and "not reachable" in job.sync_error
    page = flashes(client, "/admin/job/list")
    assert "example.hello" in page
    assert "saved" in page or "created" in page
    assert "not updated yet" in page
    assert "not synced" in page

    edit_page = client.get("/admin/job/edit/example.hello")
    assert edit_page.status_code == 200
    # ExampleJob declares its Secrets: one password field per secret, never filled.
    assert 'name="secrets-token" type="password" value=""' in edit_page.text
    details = client.get("/admin/job/details/example.hello")
    assert "stored, encrypted" in details.text
    assert client.get("/admin/job/list?search=hello").status_code == 200
    # An edit that fails validation shows the form again without the secret typed into it.
    failed = edit_job(
        client, cron_expr="61 * * * *", secret_cfg=json.dumps({"token": SECRET_VALUE})
    )
    assert failed.status_code == 400
    assert field_error(failed.text, "cron_expr")
    # The fixture checks that no response contained the secret value or its token.


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("cron_expr", "0 0 31 2 *", "never fires"),
        ("cron_expr", "*/10 * * * * *", "exactly 5 fields"),
        ("cron_expr", "not a cron", "exactly 5 fields"),
        ("timezone", "Mars/Olympus_Mons", "not an IANA timezone"),
        ("handler_path", "extensions.example.job:Missing", "has no attribute 'Missing'"),
        ("handler_path", "no-such-thing", "not a handler path"),
        ("handler_path", "connecthub.db.models:Job", "not a subclass"),
        ("public_cfg", "[1, 2]", "must be a JSON object"),
        ("public_cfg", '{"name": ', "not valid JSON"),
        ("public_cfg", '{"nmae": "Mars"}', "nmae"),
        ("secret_cfg", '["a"]', "must be a JSON object"),
        ("id", "has spaces", "use only letters"),
        ("max_retries", "-1", "greater than or equal to 0"),
    ],
)
def test_validation_errors_show_under_the_field(
    client: RecordingClient, field: str, value: str, expected: str
) -> None:
    response = create_job(client, **{field: value})
    assert response.status_code == 400
    assert expected in field_error(response.text, field)
    assert job_count() == 0
    # The form comes back with what was typed, except the secrets.
    assert 'id="secret_cfg"' in response.text
    assert field_group(response.text, "secret_cfg").count(SECRET_VALUE) == 0


def test_handler_picker_lists_the_available_plugins(client: RecordingClient) -> None:
    page = client.get("/admin/job/create").text
    assert 'list="handler_path-options"' in page
    assert f'<option value="{HANDLER}">' in page


def test_blank_secret_keeps_the_stored_one(client: RecordingClient) -> None:
    assert create_job(client).status_code == 302
    token = stored_job().secret_cfg  # type: ignore[union-attr]

    assert edit_job(client, secret_cfg="", public_cfg='{"name": "Venus"}').status_code == 302
    job = stored_job()
    assert job.secret_cfg == token  # type: ignore[union-attr]
    assert job.public_cfg == {"name": "Venus"}  # type: ignore[union-attr]

    assert edit_job(client, secret_cfg='{"token": "another-one"}').status_code == 302
    assert decrypt_json(stored_job().secret_cfg) == {"token": "another-one"}  # type: ignore[union-attr,arg-type]

    assert edit_job(client, secret_cfg="{}").status_code == 302
    assert stored_job().secret_cfg is None  # type: ignore[union-attr]


def test_the_id_cannot_be_changed_by_an_edit(client: RecordingClient) -> None:
    assert create_job(client).status_code == 302
    response = client.post(
        "/admin/job/edit/example.hello", data=job_form(id="other.job", name="Renamed")
    )
    assert response.status_code == 400
    assert "cannot be changed" in html.unescape(response.text)
    assert stored_job("other.job") is None
    assert stored_job().name == "Hello"  # type: ignore[union-attr]


def test_duplicate_id_is_a_clean_message(client: RecordingClient) -> None:
    assert create_job(client).status_code == 302
    response = create_job(client, name="Again")
    assert response.status_code == 400
    assert "already exists" in html.unescape(response.text)
    assert stored_job().name == "Hello"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            IntegrityError(
                "INSERT INTO job (id, secret_cfg) VALUES (%(id)s, %(secret_cfg)s)",
                {"id": "example.hello", "secret_cfg": "gAAAAB-fake-token"},
                Exception("duplicate key value violates unique constraint"),
            ),
            "conflicts with existing data",
        ),
        (
            OperationalError(
                "UPDATE job SET secret_cfg=%(secret_cfg)s",
                {"secret_cfg": "gAAAAB-fake-token"},
                Exception("server closed the connection unexpectedly"),
            ),
            "could not save this job",
        ),
    ],
)
def test_database_errors_never_show_sql_or_parameters(
    client: RecordingClient, monkeypatch: pytest.MonkeyPatch, error: Exception, expected: str
) -> None:
    def fail(_spec: Any, _actor: Any) -> Job:
        raise error

    monkeypatch.setattr(job_changes, "insert_job", fail)
    response = create_job(client)
    assert response.status_code == 400
    page = html.unescape(response.text)
    assert expected in page
    for leak in (
        "INSERT",
        "UPDATE",
        "gAAAAB-fake-token",
        "secret_cfg=",
        "duplicate key",
        "server closed",
    ):
        assert leak not in page


# --- job actions --------------------------------------------------------------------------


def test_enable_and_disable_need_the_csrf_token(client: RecordingClient) -> None:
    assert create_job(client).status_code == 302
    details = client.get("/admin/job/details/example.hello").text
    token = page_csrf_token(details)

    refused = client.post("/admin/job/disable/example.hello", data={"csrf_token": "forged"})
    assert refused.status_code == 403
    assert stored_job().enabled is True  # type: ignore[union-attr]
    missing = client.post("/admin/job/disable/example.hello", data={})
    assert missing.status_code == 403
    assert stored_job().enabled is True  # type: ignore[union-attr]

    disabled = client.post(
        "/admin/job/disable/example.hello", data={"csrf_token": token, "back_to": "details"}
    )
    assert disabled.status_code == 303
    assert disabled.headers["location"].endswith("/admin/job/details/example.hello")
    assert stored_job().enabled is False  # type: ignore[union-attr]
    page = flashes(client, "/admin/job/details/example.hello")
    assert "disabled, but its Prefect deployment is not updated yet" in page
    assert ">Enable<" in page

    enabled = client.post("/admin/job/enable/example.hello", data={"csrf_token": token})
    assert enabled.status_code == 303
    assert stored_job().enabled is True  # type: ignore[union-attr]


def test_run_now_with_prefect_down_says_why(client: RecordingClient) -> None:
    assert create_job(client).status_code == 302
    token = page_csrf_token(client.get("/admin/job/list").text)
    response = client.post("/admin/job/run/example.hello", data={"csrf_token": token})
    assert response.status_code == 303
    assert log_count() == 0
    page = flashes(client, response.headers["location"])
    assert "did not start" in page and "not reachable" in page


def test_delete_removes_the_row_and_reports_the_deployment(client: RecordingClient) -> None:
    assert create_job(client).status_code == 302
    response = client.delete("/admin/job/delete?pks=example.hello")
    assert response.status_code == 200
    assert stored_job() is None
    page = flashes(client, "/admin/job/list")
    assert "deleted; its Prefect deployment is not deleted yet" in page


# --- JobLog -------------------------------------------------------------------------------


def test_retry_without_or_with_a_wrong_csrf_token_changes_nothing(
    client: RecordingClient,
) -> None:
    assert create_job(client).status_code == 302
    log_id = add_log()
    details = client.get(f"/admin/job-log/details/{log_id}")
    assert details.status_code == 200
    token = page_csrf_token(details.text)

    for data in (
        {"use": "snapshot"},
        {"use": "snapshot", "csrf_token": "forged-token"},
        {"use": "current", "csrf_token": token + "x"},
    ):
        response = client.post(f"/admin/job-log/retry/{log_id}", data=data)
        assert response.status_code == 403
        assert log_count() == 1

    # With the right token it reaches the engine, which is down: a message, still no new row.
    response = client.post(
        f"/admin/job-log/retry/{log_id}", data={"use": "snapshot", "csrf_token": token}
    )
    assert response.status_code == 303
    assert response.headers["location"].endswith(f"/admin/job-log/details/{log_id}")
    assert log_count() == 1
    assert "was not retried" in flashes(client, response.headers["location"])


def test_retry_of_a_deleted_job_says_so(client: RecordingClient) -> None:
    log_id = add_log(job_id="gone.job")
    details = client.get(f"/admin/job-log/details/{log_id}")
    assert "(deleted)" in details.text
    token = page_csrf_token(details.text)
    response = client.post(
        f"/admin/job-log/retry/{log_id}", data={"use": "current", "csrf_token": token}
    )
    assert response.status_code == 303
    page = flashes(client, response.headers["location"])
    assert "JobLog #1 was not retried: Job 'gone.job'" in page
    assert log_count() == 1


def test_cross_site_post_lands_on_login(
    client: RecordingClient, anonymous: RecordingClient
) -> None:
    assert create_job(client).status_code == 302
    log_id = add_log()
    token = page_csrf_token(client.get(f"/admin/job-log/details/{log_id}").text)
    # A page on another site can make the browser POST, but SameSite=Lax keeps the cookie back.
    with TestClient(anonymous.app, follow_redirects=False) as other_site:
        for path, data in (
            (f"/admin/job-log/retry/{log_id}", {"use": "snapshot", "csrf_token": token}),
            ("/admin/job/disable/example.hello", {"csrf_token": token}),
            ("/admin/job/create", job_form(id="evil.job")),
        ):
            response = other_site.post(path, data=data, headers={"origin": "https://evil.example"})
            assert response.status_code == 302
            assert response.headers["location"].endswith("/admin/login")
    assert log_count() == 1
    assert stored_job().enabled is True  # type: ignore[union-attr]
    assert stored_job("evil.job") is None


def test_joblog_is_read_only(client: RecordingClient) -> None:
    log_id = add_log()
    for method, path in (
        ("GET", "/admin/job-log/create"),
        ("POST", "/admin/job-log/create"),
        ("GET", f"/admin/job-log/edit/{log_id}"),
        ("POST", f"/admin/job-log/edit/{log_id}"),
        ("DELETE", f"/admin/job-log/delete?pks={log_id}"),
        ("GET", "/admin/job-log/export/csv"),
        ("GET", "/admin/job-log/export/json"),
    ):
        response = client.request(
            method, path, data={"status": "SUCCESS"} if method == "POST" else None
        )
        assert response.status_code in (403, 404, 405), (method, path, response.status_code)
    assert log_count() == 1
    listing = client.get("/admin/job-log/list").text
    assert "/admin/job-log/create" not in listing
    assert "/admin/job-log/export" not in listing
    details = client.get(f"/admin/job-log/details/{log_id}").text
    assert f"/admin/job-log/edit/{log_id}" not in details
    assert "modal-delete" not in details


def test_joblog_details_shows_the_execution(
    client: RecordingClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_UI_URL", "http://prefect.example:4200")
    get_settings.cache_clear()
    first = add_log(
        status=RunStatus.FAILED.value,
        error="boom: it failed",
        traceback="Traceback (most recent call last):\n  ValueError: boom",
        flow_run_id="11111111-2222-3333-4444-555555555555",
        duration_ms=1500,
    )
    second = add_log(
        status=RunStatus.SUCCESS.value,
        retry_of=first,
        result={"greeting": "Hello"},
        flow_run_id="66666666-2222-3333-4444-555555555555",
    )
    page = html.unescape(client.get(f"/admin/job-log/details/{first}").text)
    for text in (
        "FAILED",
        "boom: it failed",
        "ValueError: boom",
        "1.5 s",
        '"name": "Mars"',
        "http://prefect.example:4200/runs/flow-run/11111111-2222-3333-4444-555555555555",
        'id="retry-snapshot"',
        "Retry with current config",
        'name="csrf_token"',
    ):
        assert text in page, text
    page = html.unescape(client.get(f"/admin/job-log/details/{second}").text)
    assert f'/admin/job-log/details/{first}">JobLog #{first}<' in page
    assert '"greeting": "Hello"' in page


def _insert_logs(count: int, job_ids: tuple[str, ...] = ("job-a", "job-b")) -> None:
    statuses = [status.value for status in RunStatus]
    rows = [
        {
            "job_id": job_ids[i % len(job_ids)],
            "status": statuses[i % len(statuses)],
            "trigger": "schedule",
            "attempt": 1,
            "flow_run_id": f"run-{i}",
        }
        for i in range(count)
    ]
    with get_engine().begin() as connection:
        connection.execute(insert(JobLog), rows)


def _listed_ids(page: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'/admin/job-log/details/(\d+)"', page)]


def test_joblog_list_is_newest_first_filtered_and_count_capped(
    client: RecordingClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin_views.JobLogView, "count_cap", 50)
    _insert_logs(120)
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(get_engine(), "before_cursor_execute", record)
    try:
        page = client.get("/admin/job-log/list").text
    finally:
        event.remove(get_engine(), "before_cursor_execute", record)
    assert "of 50+ items" in page
    ids = _listed_ids(page)
    assert ids == sorted(ids, reverse=True) and ids[0] == 120
    counts = [s for s in statements if "count(" in s.lower()]
    assert counts and all("LIMIT" in s.upper() for s in counts)
    assert not any("DISTINCT" in s.upper() for s in statements)

    failed = client.get("/admin/job-log/list?status=FAILED&pageSize=100").text
    with session_scope() as session:
        expected = session.scalars(
            select(JobLog.id).where(JobLog.status == "FAILED").order_by(JobLog.id.desc())
        ).all()
    assert _listed_ids(failed) == list(expected)
    assert f"of {len(expected)} items" in failed

    by_job = client.get("/admin/job-log/list?job_id=job-b&pageSize=100").text
    assert set(_listed_ids(by_job)) == set(range(2, 121, 2))
    searched = client.get("/admin/job-log/list?search=job-a&pageSize=100").text
    assert set(_listed_ids(searched)) == set(range(1, 120, 2))
    assert _listed_ids(client.get("/admin/job-log/list?search=job").text) == []


# --- Job search: the start of the id or the name ---------------------------------------------

# Each term and the jobs it must find (sorted by id). Search is a case-insensitive prefix of the
# id or the name, with every character literal: "%" and "_" (LIKE), "*", "?" and "[" (GLOB on
# SQLite) and "\" match only themselves. A term found only inside a value finds nothing.
SEARCH_JOBS = {
    "crm.sync": "Nightly CRM sync",
    "billing.export": "Invoices to ERP",
    "ab_c.job": "Underscore in the id",
    "abxc.job": "Would match ab_c if _ were a wildcard",
    "pct.100": "100% done",
    "pct.1000": "1000 rows",
    "path.job": "C:\\temp\\out",
    "glob.star": "a*b",
    "glob.any": "ab",
    "glob.question": "what?",
    "glob.question-x": "whatx",
    "glob.bracket": "[draft] report",
    "glob.bracket-d": "d report",
}
SEARCHES = {
    "CRM": ["crm.sync"],
    "crm.S": ["crm.sync"],
    "NIGHTLY crm": ["crm.sync"],
    "  nightly  ": ["crm.sync"],
    "invoices": ["billing.export"],
    "sync": [],  # inside the id, at the end of the name
    "export": [],  # inside the id only
    "report": [],  # inside the names only
    "ab_c": ["ab_c.job"],
    "AB_": ["ab_c.job"],
    "_": [],
    "100%": ["pct.100"],
    "%": [],
    "c:\\t": ["path.job"],
    "c:\\": ["path.job"],
    "\\": [],
    "a*": ["glob.star"],
    "what?": ["glob.question"],
    "[draft]": ["glob.bracket"],
    "[d": ["glob.bracket"],
    "*": [],
    "?": [],
}


def _insert_jobs(names: dict[str, str]) -> None:
    rows = [
        {**stored_defaults(), "id": job_id, "name": name, "cron_expr": "* * * * *",
         "handler_path": HANDLER, "created_at": utcnow(), "updated_at": utcnow()}
        for job_id, name in names.items()
    ]
    with get_engine().begin() as connection:
        connection.execute(insert(Job), rows)


def _listed_job_ids(page: str) -> list[str]:
    return re.findall(r'href="[^"]*/admin/job/details/([^"?/]+)"', page)


def test_job_search_is_a_literal_case_insensitive_prefix_of_id_or_name(any_db: None) -> None:
    _insert_jobs(SEARCH_JOBS)
    view = admin_views.JobView()
    found = {}
    with session_scope() as session:
        for term in SEARCHES:
            stmt = view.search_query(select(Job.id).order_by(Job.id), term)
            found[term] = list(session.scalars(stmt))
    assert found == SEARCHES
    with session_scope() as session:  # a blank term is no search
        blank = view.search_query(select(func.count()).select_from(Job), "   ")
        assert session.scalar(blank) == len(SEARCH_JOBS)


def test_job_list_search_finds_jobs_by_the_start_of_id_or_name(client: RecordingClient) -> None:
    _insert_jobs(SEARCH_JOBS)
    listing = client.get("/admin/job/list").text
    assert "start of id or name" in listing
    for term, expected in [("CRM", ["crm.sync"]), ("nightly", ["crm.sync"]),
                           ("sync", []), ("100%", ["pct.100"]), ("ab_", ["ab_c.job"])]:
        page = client.get("/admin/job/list", params={"search": term}).text
        assert sorted(_listed_job_ids(page)) == expected, term
        if expected:
            assert f"of {len(expected)} items" in page


def _explain(statement: str, parameters: Any) -> str:
    with get_engine().connect() as connection:
        rows = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()
    return "\n".join(str(row[0]) for row in rows)


def test_job_search_uses_the_prefix_indexes_on_postgresql(client: RecordingClient) -> None:
    _insert_jobs({f"bench.job-{i:05d}": f"Bench job {i}" for i in range(10_000)})
    with get_engine().begin() as connection:
        connection.exec_driver_sql("ANALYZE job")
    statements: list[tuple[str, Any]] = []

    def record(_conn, _cursor, statement, parameters, *_args):  # type: ignore[no-untyped-def]
        if "lower(job.id)" in statement:
            statements.append((statement, parameters))

    event.listen(get_engine(), "before_cursor_execute", record)
    try:
        by_id = client.get("/admin/job/list?search=Bench.Job-0123").text
        by_name = client.get("/admin/job/list?search=bench%20JOB%20123").text
    finally:
        event.remove(get_engine(), "before_cursor_execute", record)
    assert _listed_job_ids(by_id) == [f"bench.job-0123{i}" for i in range(10)]
    assert "of 10 items" in by_id
    assert "of 11 items" in by_name  # 123 and 1230-1239
    # The count and the page of each search.
    assert len(statements) == 4
    assert sum("count(*)" in statement for statement, _ in statements) == 2
    for statement, parameters in statements:
        plan = _explain(statement, parameters)
        assert "Seq Scan" not in plan, plan
        assert "Index Cond: ((lower((id)::text) ~>=~" in plan, plan
        assert "ix_job_id_prefix" in plan and "ix_job_name_prefix" in plan, plan


def test_job_search_uses_the_prefix_indexes_on_sqlite(sqlite_env: Any) -> None:
    _insert_jobs({f"bench.job-{i:05d}": f"Bench job {i}" for i in range(1_000)})
    stmt = admin_views.JobView().search_query(select(Job).order_by(Job.id), "Bench.Job-0012")
    count, page = select(func.count()).select_from(stmt.subquery()), stmt.limit(5)
    engine = get_engine()
    with engine.connect() as connection:
        assert connection.scalar(count) == 10
        assert list(connection.scalars(page)) == [f"bench.job-0012{i}" for i in range(5)]
        for query in (count, page):  # as SQLAdmin runs them
            compiled = query.compile(engine)
            parameters = tuple(compiled.params[name] for name in compiled.positiontup or ())
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", parameters)
            plan = "\n".join(row[-1] for row in rows)
            assert "SEARCH job USING INDEX ix_job_id_prefix" in plan, plan
            assert "SEARCH job USING INDEX ix_job_name_prefix" in plan, plan
            assert "SCAN job" not in plan, plan
