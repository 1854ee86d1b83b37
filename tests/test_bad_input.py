"""Bad input matrix: what operators get wrong, on the three ways in, and what they must get back.

Three surfaces, each with its own contract:

- **admin form** (`POST /admin/job/create` and `/admin/job/edit/<id>`, logged in, Prefect down):
  400 with the error under the field it concerns, never a 500; nothing saved (the job count is
  unchanged, and an existing job edited with the same bad value is unchanged, row for row);
  the secret typed into the form never comes back in any response.
- **`connecthub jobs apply FILE --no-sync`** (a real process on PostgreSQL): exit status 1 and
  exactly one line on stderr that names the job and the field, is not an "unexpected" error and
  shows no SQL; nothing written (the file's valid jobs are not created, the existing job it
  also updates is unchanged); no secret value in the output.
- **the CLI** (`run`, `retry`, `logs`, `jobs delete/export`): a failure of the command is one
  `error:` line with exit status 1; a malformed option or argument is Click's usage error (exit
  status 2, naming the option); neither has a traceback or SQL, and nothing changes.

Valid edge cases (emoji and CJK names, Asia/Kathmandu, a 200-character id, ...) must succeed.
The validation of `JobSpec` itself is unit-tested in test_plugins.py; these cases go through
the real entry points, and avoid repeating test_admin_http.py's form cases.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, func, insert, select, text

from connecthub.db.engine import get_engine, make_engine
from connecthub.db.migrate import upgrade
from connecthub.db.models import Job, JobLog
from connecthub.security.fernet import decrypt_json
from tests.support.admin import RecordingClient, field_error, job_count, job_form, stored_job
from tests.support.cli import Cli, one_line_error
from tests.support.pg import create_pg_database, drop_pg_database, pg_url

REPO = Path(__file__).resolve().parents[1]
ECHO = "tests.plugins.jobs:EchoJob"
CASE_SECRET = "bad-input-secret-6b1d94c2"  # the secret typed along with each bad input
BIG_SECRET = "big-secret-" + "q" * (17 * 1024)


# --- the admin form ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FormCase:
    field: str
    value: str
    expected: str  # shown under the field; "" = any error there

    def form(self, job_id: str) -> dict[str, str]:
        return form_with(job_id, **{self.field: self.value})


def form_with(job_id: str, **values: str) -> dict[str, str]:
    form = job_form(
        id=job_id, handler_path=ECHO, public_cfg='{"region": "eu"}',
        secret_cfg=json.dumps({"token": CASE_SECRET}),
    )
    form.update(values)
    return form


FORM_CASES = {
    # cron
    "cron minute 61": FormCase("cron_expr", "61 * * * *", "is not a valid cron expression"),
    "cron Jenkins H": FormCase("cron_expr", "H * * * *", "is not a valid cron expression"),
    "cron empty": FormCase("cron_expr", "", "required"),
    "cron @reboot": FormCase("cron_expr", "@reboot", "unknown cron alias"),
    "cron 6 fields with a year": FormCase("cron_expr", "0 0 1 1 * 2030", "exactly 5 fields"),
    # timezone
    "timezone empty": FormCase("timezone", "", "required"),
    "timezone UTC+5": FormCase("timezone", "UTC+5", "not an IANA timezone"),
    "timezone a tzdata directory": FormCase("timezone", "America", "not an IANA timezone"),
    "timezone 300 characters": FormCase("timezone", "Europe/" + "x" * 293, "not an IANA timezone"),
    # ids
    "id with a slash": FormCase("id", "crm/sync", "use only letters"),
    "id with unicode": FormCase("id", "jöb.ünïcode", "use only letters"),
    "id of 201 characters": FormCase("id", "a" * 201, "at most 200 characters"),
    "id SQL-looking": FormCase("id", "x'; DROP TABLE job;--", "use only letters"),
    "id empty": FormCase("id", "", "required"),
    # handler paths
    "handler missing module": FormCase(
        "handler_path", "extensions.nope.job:Job", "module 'extensions.nope.job' was not found"
    ),
    "handler os:system": FormCase("handler_path", "os:system", "not a subclass"),
    # JSON shapes
    "public_cfg a string": FormCase("public_cfg", '"region=eu"', "must be a JSON object"),
    "public_cfg a number": FormCase("public_cfg", "42", "must be a JSON object"),
    "public_cfg null": FormCase("public_cfg", "null", "must be a JSON object"),
    "public_cfg with NaN": FormCase("public_cfg", '{"ratio": NaN}', ""),
    "secret_cfg invalid JSON": FormCase(
        "secret_cfg", '{"token": "' + CASE_SECRET, "not valid JSON"
    ),
    "secret_cfg a number": FormCase("secret_cfg", "1234567", "must be a JSON object"),
    "secret_cfg a quoted string": FormCase(
        "secret_cfg", json.dumps(CASE_SECRET), "must be a JSON object"
    ),
    # huge payloads
    "public_cfg over 64 KiB": FormCase(
        "public_cfg", json.dumps({"blob": "x" * (65 * 1024)}), "larger than 64 KiB"
    ),
    "secret_cfg over 16 KiB": FormCase(
        "secret_cfg", json.dumps({"token": BIG_SECRET}), "larger than 16 KiB"
    ),
    "description over 4000": FormCase("description", "d" * 4001, "at most 4000 characters"),
    "public_cfg nested 100000 deep": FormCase("public_cfg", "[" * 100_000 + "]" * 100_000, ""),
    # text the database cannot store
    "name with a NUL byte": FormCase("name", "nightly\x00sync", ""),
    # numbers
    "timeout negative": FormCase("timeout_seconds", "-5", "greater than 0"),
    "timeout not a number": FormCase("timeout_seconds", "ten", "Not a valid integer"),
    "concurrency 0": FormCase("concurrency_limit", "0", "greater than or equal to 1"),
    "retry delay negative": FormCase("retry_delay_seconds", "-1", "greater than or equal to 0"),
    "retries 101": FormCase("max_retries", "101", "less than or equal to 100"),
    "tag of 61 characters": FormCase("tags", "ok, " + "t" * 61, "1 to 60 characters"),
}


def job_row(job_id: str) -> dict[str, Any] | None:
    """Every column of the job, for comparing before and after."""
    job = stored_job(job_id)
    if job is None:
        return None
    return {column.name: getattr(job, column.name) for column in Job.__table__.columns}


def page_text(response: Any) -> str:
    return html.unescape(response.text)


@pytest.mark.parametrize("case", FORM_CASES.values(), ids=FORM_CASES.keys())
def test_admin_form_refuses(admin: RecordingClient, case: FormCase) -> None:
    existing = admin.post("/admin/job/create", data=form_with("keep.me"))
    assert existing.status_code == 302, existing.text
    before = job_row("keep.me")

    created = admin.post("/admin/job/create", data=case.form("bad.case"))
    assert created.status_code == 400, (created.status_code, created.text[-2000:])
    assert case.expected in field_error(created.text, case.field)
    assert job_count() == 1
    assert stored_job("bad.case") is None

    # The same value typed into the edit form of an existing job. (The id of an existing job
    # rides hidden in that form: a changed one is refused as a whole, not under a field.)
    edited = admin.post("/admin/job/edit/keep.me", data=case.form("keep.me"))
    assert edited.status_code == 400, (edited.status_code, edited.text[-2000:])
    if case.field != "id":
        assert case.expected in field_error(edited.text, case.field)
    assert job_row("keep.me") == before
    assert job_count() == 1

    for response in (created, edited):
        body = page_text(response)
        assert CASE_SECRET not in body
        assert BIG_SECRET[:40] not in body
    # The `client` fixture also checks every response for the stored Fernet token.


VALID_FORMS = {
    "emoji and CJK name, Asia/Kathmandu": {
        "id": "crm.sync-emoji",
        "name": "🚀 Nightly sync ✓ 数据同步",
        "timezone": "Asia/Kathmandu",
        "public_cfg": json.dumps({"名前": "Zoë 🚀", "région": "Île-de-France"}, ensure_ascii=False),
    },
    "id of exactly 200 characters": {"id": "a" * 199 + "z"},
    "description of exactly 4000 characters": {"id": "long.description", "description": "é" * 4000},
    "leap day cron in Pacific/Chatham": {
        "id": "leap.day", "cron_expr": "0 0 29 2 *", "timezone": "Pacific/Chatham",
    },
    "unicode secret, every allowed id character": {
        "id": "Az09._-x", "secret_cfg": json.dumps({"token": "pässwörd-🔑-" + CASE_SECRET}),
    },
    "@hourly and spaces around values": {
        "id": "  spaced.job  ", "cron_expr": "  @HOURLY ", "timezone": "Europe/Berlin",
    },
}


@pytest.mark.parametrize("values", VALID_FORMS.values(), ids=VALID_FORMS.keys())
def test_admin_form_accepts_valid_edge_cases(
    admin: RecordingClient, values: dict[str, str]
) -> None:
    fields = dict(values)
    form = form_with(fields.pop("id"), **fields)
    response = admin.post("/admin/job/create", data=form)
    assert response.status_code == 302, page_text(response)[-3000:]
    job_id = values["id"].strip()
    job = stored_job(job_id)
    assert job is not None
    expected_secret = json.loads(form["secret_cfg"])
    assert decrypt_json(job.secret_cfg) == expected_secret  # type: ignore[arg-type]
    assert job.public_cfg == json.loads(form["public_cfg"])
    if "name" in values:
        assert job.name == values["name"]
    if "description" in values:
        assert job.description == values["description"]
    assert job.timezone == form["timezone"].strip()
    assert job.cron_expr == " ".join(form["cron_expr"].split()).lower()
    details = admin.get(f"/admin/job/details/{job_id}")
    assert details.status_code == 200
    assert (values.get("name") or job_id) in page_text(details)
    assert admin.get(f"/admin/job/edit/{job_id}").status_code == 200
    listing = admin.get("/admin/job/list")
    assert listing.status_code == 200 and job_id in page_text(listing)
    for body in (page_text(details), page_text(listing)):
        assert CASE_SECRET not in body


# --- ids typed into admin addresses ----------------------------------------------------------

BEYOND_BIGINT = "99999999999999999999"
URL_CASES = {
    # name: (method, path, form data or None)
    "JobLog id not a number": ("GET", "/admin/job-log/details/abc", None),
    "JobLog id beyond bigint": ("GET", f"/admin/job-log/details/{BEYOND_BIGINT}", None),
    "retry of a JobLog id beyond bigint": (
        "POST", f"/admin/job-log/retry/{BEYOND_BIGINT}", {"use": "snapshot"}
    ),
    "file route of a JobLog id beyond bigint": (
        "GET", f"/admin/job-log/{BEYOND_BIGINT}/error/download/", None
    ),
    "job id with a NUL byte, details": ("GET", "/admin/job/details/%00", None),
    "job id with a NUL byte, edit": ("GET", "/admin/job/edit/%00", None),
    "job id with a NUL byte, run now": ("POST", "/admin/job/run/%00", {}),
    "job id with a NUL byte, delete": ("DELETE", "/admin/job/delete?pks=%00", None),
    "job search with a NUL byte": ("GET", "/admin/job/list?search=%00", None),
    "JobLog filter with a NUL byte": ("GET", "/admin/job-log/list?job_id=%00", None),
    "SQL-looking job id, details": ("GET", "/admin/job/details/x'%3B%20DROP%20TABLE%20job%3B--",
                                    None),
    "SQL-looking JobLog search": ("GET", "/admin/job-log/list?search=x'%3B+DROP+TABLE+job_log",
                                  None),
    "page beyond bigint": ("GET", f"/admin/job-log/list?page={BEYOND_BIGINT}", None),
    "page size beyond bigint": ("GET", f"/admin/job-log/list?pageSize={BEYOND_BIGINT}", None),
    "unknown sort column": ("GET", "/admin/job/list?sortBy=secret_cfg", None),
}


@pytest.mark.parametrize("name", URL_CASES.keys())
def test_admin_addresses_with_bad_ids(admin: RecordingClient, name: str) -> None:
    """An id in the address is input too: never a 500, nothing changed."""
    assert admin.post("/admin/job/create", data=form_with("keep.me")).status_code == 302
    page = admin.get("/admin/job/details/keep.me").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    before = dump(get_engine())
    method, path, data = URL_CASES[name]
    if data is not None:
        data = {**data, "csrf_token": token.group(1)}
    response = admin.request(method, path, data=data)
    assert response.status_code in (200, 302, 303, 400, 403, 404, 405), response.status_code
    assert dump(get_engine()) == before
    assert CASE_SECRET not in page_text(response)


# --- jobs apply and the CLI, as real processes on PostgreSQL -----------------------------------


def apply_entry(job_id: str, **fields: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": job_id, "cron_expr": "*/15 * * * *", "handler_path": ECHO,
        "public_cfg": {"region": "eu"}, "secret_cfg": {"token": CASE_SECRET},
    }
    entry.update(fields)
    return entry


@dataclass(frozen=True)
class ApplyCase:
    expected: tuple[str, ...]  # all in the error line
    bad: dict[str, Any] | None = None  # a bad job, written after a valid update and a new job
    raw: str | None = None  # or the whole file's text
    suffix: str = ".yaml"


def bad_job(**fields: Any) -> dict[str, Any]:
    return apply_entry("bad.job", **fields)


APPLY_CASES = {
    # cron
    "cron never fires (Feb 31)": ApplyCase(("job 'bad.job'", "cron_expr", "never fires"),
                                           bad_job(cron_expr="0 0 31 2 *")),
    "cron 6 fields": ApplyCase(("cron_expr", "exactly 5 fields"),
                               bad_job(cron_expr="*/10 * * * * *")),
    "cron empty": ApplyCase(("cron_expr", "required"), bad_job(cron_expr="")),
    "cron a number": ApplyCase(("cron_expr", "valid string"), bad_job(cron_expr=5)),
    # timezone
    "timezone Mars/Olympus": ApplyCase(("timezone", "not an IANA timezone"),
                                       bad_job(timezone="Mars/Olympus")),
    "timezone empty": ApplyCase(("timezone", "not an IANA timezone"), bad_job(timezone="")),
    "timezone a tzdata directory": ApplyCase(("timezone", "not an IANA timezone"),
                                             bad_job(timezone="Europe")),
    # ids
    "id with spaces": ApplyCase(("id", "use only letters"),
                                apply_entry("crm sync", cron_expr="* * * * *")),
    "id SQL-looking": ApplyCase(("id", "use only letters"),
                                apply_entry("x'; DROP TABLE job;--")),
    "id of 201 characters": ApplyCase(("id", "at most 200 characters"), apply_entry("b" * 201)),
    "id with unicode": ApplyCase(("id", "use only letters"), apply_entry("zürich.sync")),
    "id empty": ApplyCase(("id",), apply_entry("")),
    "id a number": ApplyCase(("job #3", "id", "valid string"), apply_entry(42)),
    "id with a newline": ApplyCase(("id", "use only letters"), apply_entry("two\nlines")),
    # handler paths
    "handler without a colon": ApplyCase(("handler_path", "not a handler path"),
                                         bad_job(handler_path="tests.plugins.jobs.EchoJob")),
    "handler missing module": ApplyCase(("handler_path", "was not found"),
                                        bad_job(handler_path="nope.module:Job")),
    "handler missing attribute": ApplyCase(("handler_path", "has no attribute 'Nope'"),
                                           bad_job(handler_path="tests.plugins.jobs:Nope")),
    "handler not a BaseJob": ApplyCase(("handler_path", "not a subclass"),
                                       bad_job(handler_path="connecthub.db.models:JobLog")),
    "handler os:system": ApplyCase(("handler_path", "not a subclass"),
                                   bad_job(handler_path="os:system")),
    # JSON shapes
    "public_cfg a list": ApplyCase(("public_cfg", "valid dictionary"),
                                   bad_job(public_cfg=["a", "b"])),
    "public_cfg a string": ApplyCase(("public_cfg", "valid dictionary"),
                                     bad_job(public_cfg="region=eu")),
    "public_cfg null": ApplyCase(("public_cfg", "valid dictionary"), bad_job(public_cfg=None)),
    "public_cfg with Infinity": ApplyCase(
        ("public_cfg",),
        raw=json.dumps([apply_entry("keep.me", public_cfg={"changed": True}),
                        apply_entry("new.job")])[:-1]
        + ', {"id": "bad.job", "cron_expr": "* * * * *", "handler_path": "' + ECHO
        + '", "public_cfg": {"ratio": Infinity}}]',
        suffix=".json",
    ),
    "secret_cfg a list": ApplyCase(("secret_cfg", "valid dictionary"),
                                   bad_job(secret_cfg=[CASE_SECRET])),
    "secret_cfg a string": ApplyCase(("secret_cfg", "valid dictionary"),
                                     bad_job(secret_cfg=CASE_SECRET)),
    "not valid JSON": ApplyCase(("not valid JSON",), raw='[{"id": "x", ', suffix=".json"),
    "JSON nested 100000 deep": ApplyCase(
        ("not valid JSON",), raw="[" * 100_000 + "]" * 100_000, suffix=".json"
    ),
    # huge payloads
    "public_cfg over 64 KiB": ApplyCase(("public_cfg", "larger than 64 KiB"),
                                        bad_job(public_cfg={"blob": "x" * (65 * 1024)})),
    "secret_cfg over 16 KiB": ApplyCase(("secret_cfg", "larger than 16 KiB"),
                                        bad_job(secret_cfg={"token": BIG_SECRET})),
    "description over 4000": ApplyCase(("description", "at most 4000 characters"),
                                       bad_job(description="d" * 4001)),
    # text the database cannot store
    "description with a NUL byte": ApplyCase(("description",),
                                             bad_job(description="before\x00after")),
    # unknown fields
    "unknown field schedule": ApplyCase(("schedule", "Extra inputs are not permitted"),
                                        bad_job(schedule="* * * * *")),
    "secrets misspelt": ApplyCase(("secrets", "Extra inputs are not permitted"),
                                  bad_job(secrets={"token": CASE_SECRET})),
    # numbers
    "retries negative": ApplyCase(("max_retries", "greater than or equal to 0"),
                                  bad_job(max_retries=-1)),
    "timeout negative": ApplyCase(("timeout_seconds", "greater than 0"),
                                  bad_job(timeout_seconds=-30)),
    "timeout a fraction": ApplyCase(("timeout_seconds", "valid integer"),
                                    bad_job(timeout_seconds=1.5)),
    "concurrency 0": ApplyCase(("concurrency_limit", "greater than or equal to 1"),
                               bad_job(concurrency_limit=0)),
    "collision strategy unknown": ApplyCase(("collision_strategy", "ENQUEUE"),
                                            bad_job(collision_strategy="DROP")),
    "enabled not a boolean": ApplyCase(("enabled", "valid boolean"),
                                       bad_job(enabled="yes please")),
}

CLI_CASES: dict[str, tuple[tuple[str, ...], int, tuple[str, ...]]] = {
    # name: (argv, exit status, expected in stderr)
    "run unknown job": (("run", "no.such.job"), 1, ("no.such.job", "does not exist")),
    "run SQL-looking job id": (("run", "x'; DROP TABLE job;--"), 1, ("does not exist",)),
    "run job id of 5000 characters": (("run", "j" * 5000), 1, ("does not exist",)),
    "run --params a string": (("run", "keep.me", "--params", '"eu"'), 1, ("JSON object",)),
    "run --params null": (("run", "keep.me", "--params", "null"), 1, ("JSON object",)),
    "run --params truncated": (("run", "keep.me", "--params", '{"a": '), 1, ("not valid JSON",)),
    "logs --limit 0": (("logs", "--limit", "0"), 2, ("--limit", "greater than or equal to 1")),
    "logs --limit -5": (("logs", "--limit", "-5"), 2, ("--limit",)),
    "logs --limit not a number": (("logs", "--limit", "ten"), 2, ("--limit", "valid integer")),
    "retry not a number": (("retry", "abc"), 2, ("log_id", "valid integer")),
    "retry a fraction": (("retry", "1.5"), 2, ("log_id", "valid integer")),
    "retry unknown JobLog": (("retry", "424242"), 1, ("no JobLog #424242",)),
    "retry JobLog beyond bigint": (("retry", "99999999999999999999"), 1, ("no JobLog",)),
    "jobs delete unknown": (("jobs", "delete", "x'; DROP TABLE job;--"), 1, ("no job with id",)),
    "jobs apply missing file": (("jobs", "apply", "--no-sync", "/nonexistent/jobs.yaml"), 1,
                                ("cannot read",)),
    "jobs export unknown format": (("jobs", "export", "--format", "xml"), 1, ("yaml or json",)),
}


@dataclass
class CliWorld:
    cli: Cli
    engine: Engine
    env: dict[str, str]
    before: dict[str, list[tuple]]
    keep_me: dict[str, Any]
    apply_results: dict[str, Any] = field(default_factory=dict)
    cli_results: dict[str, Any] = field(default_factory=dict)


def dump(engine: Engine) -> dict[str, list[tuple]]:
    """Every job, and the JobLog rows of the jobs these tests create. (Runs of jobs that other
    engine tests left deployed may still add JobLog rows of their own meanwhile.)"""
    with engine.connect() as connection:
        return {
            "job": [
                tuple(row) for row in connection.execute(text("SELECT * FROM job ORDER BY id"))
            ],
            "job_log": [tuple(row) for row in connection.execute(text(
                "SELECT * FROM job_log WHERE job_id IN ('keep.me', 'bad.case') ORDER BY id"
            ))],
        }


def write_case(directory: Path, name: str, case: ApplyCase) -> Path:
    path = directory / (re.sub(r"\W+", "-", name) + case.suffix)
    if case.raw is not None:
        path.write_text(case.raw, encoding="utf-8")
    else:
        jobs = [apply_entry("keep.me", public_cfg={"changed": name}), apply_entry("new.job"),
                case.bad]
        path.write_text(yaml.safe_dump(jobs, allow_unicode=True), encoding="utf-8")
    return path


def run_in_batches(cli: Cli, commands: dict[str, tuple[str, ...]], env: dict[str, str],
                   size: int = 6) -> dict[str, Any]:
    names = list(commands)
    results: dict[str, Any] = {}
    for start in range(0, len(names), size):
        batch = names[start:start + size]
        for name, result in zip(batch, cli.run_all([commands[n] for n in batch], **env),
                                strict=True):
            results[name] = result
    return results


@pytest.fixture(scope="module")
def cli_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliWorld]:
    """A PostgreSQL database of its own with one job and one JobLog; every case run against it."""
    name = f"connecthub_badinput_{os.getpid()}"
    create_pg_database(name)
    engine = make_engine(pg_url(name))
    try:
        upgrade(engine)
        home = tmp_path_factory.mktemp("bad-input")
        cli = Cli(data_dir=home / "data", cwd=home)
        env = {"DB_URL": pg_url(name), "PYTHONPATH": str(REPO)}
        seed = home / "seed.yaml"
        seed.write_text(yaml.safe_dump([apply_entry("keep.me", secret_cfg={"token": "kept"})]))
        seeded = cli.run("jobs", "apply", "--no-sync", str(seed), **env)
        assert seeded.returncode == 0, seeded.stderr
        with engine.begin() as connection:
            connection.execute(insert(JobLog).values(
                job_id="keep.me", status="FAILED", trigger="manual", attempt=1,
                flow_run_id="00000000-0000-0000-0000-000000000001",
                snapshot_params={"region": "eu"},
            ))
        with engine.connect() as connection:
            keep_me = dict(connection.execute(
                select(Job).where(Job.id == "keep.me")
            ).mappings().one())
        world = CliWorld(cli=cli, engine=engine, env=env, before=dump(engine), keep_me=keep_me)
        files = {case_name: write_case(home, case_name, case)
                 for case_name, case in APPLY_CASES.items()}
        world.apply_results = run_in_batches(
            cli, {n: ("jobs", "apply", "--no-sync", str(p)) for n, p in files.items()}, env
        )
        world.cli_results = run_in_batches(
            cli, {n: argv for n, (argv, _status, _expected) in CLI_CASES.items()}, env
        )
        yield world
    finally:
        engine.dispose()
        drop_pg_database(name)


def assert_clean_output(result: Any) -> None:
    everything = result.stdout + result.stderr
    assert "Traceback" not in everything
    assert "[SQL" not in everything and "gAAAA" not in everything
    assert CASE_SECRET not in everything and BIG_SECRET[:40] not in everything


@pytest.mark.parametrize("name", APPLY_CASES.keys())
def test_jobs_apply_refuses(cli_world: CliWorld, name: str) -> None:
    result = cli_world.apply_results[name]
    assert_clean_output(result)
    line = one_line_error(result)
    assert "unexpected" not in line, line
    for expected in APPLY_CASES[name].expected:
        assert expected in line, line
    assert "applied" not in result.stdout
    with cli_world.engine.connect() as connection:
        ids = set(connection.scalars(select(Job.id)))
        keep_me = dict(connection.execute(
            select(Job).where(Job.id == "keep.me")
        ).mappings().one())
    assert ids == {"keep.me"}
    assert keep_me == cli_world.keep_me


@pytest.mark.parametrize("name", CLI_CASES.keys())
def test_cli_refuses(cli_world: CliWorld, name: str) -> None:
    _argv, status, expected = CLI_CASES[name]
    result = cli_world.cli_results[name]
    assert_clean_output(result)
    if status == 1:
        line = one_line_error(result)
        assert "unexpected" not in line, line
    else:
        # A malformed option or argument: Click's usage error, before the command runs.
        assert result.returncode == 2, result
        line = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.stderr).split())
        assert "Usage: connecthub" in result.stderr
    for fragment in expected:
        assert fragment in line, line
    assert result.stdout == ""


def test_nothing_in_the_database_changed(cli_world: CliWorld) -> None:
    """Runs after every jobs-apply and CLI case: the database is exactly as seeded."""
    assert len(cli_world.apply_results) == len(APPLY_CASES)
    assert len(cli_world.cli_results) == len(CLI_CASES)
    assert dump(cli_world.engine) == cli_world.before
    with cli_world.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Job)) == 1
        assert connection.scalar(select(func.count()).select_from(JobLog)) == 1


def test_valid_edge_cases_apply(cli_world: CliWorld, tmp_path: Path) -> None:
    """The same process accepts unicode names and unusual but valid values (and writes them),
    so the refusals above are about the values, not the setup."""
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump([
        apply_entry("edge.unicode", name="🚀 Nightly sync ✓ 数据同步", timezone="Asia/Kathmandu",
                    public_cfg={"名前": "Zoë 🚀"}, description="é" * 4000),
        apply_entry("c" * 200, cron_expr="0 0 29 2 *", timezone="Pacific/Chatham",
                    tags=["t" * 60]),
    ], allow_unicode=True), encoding="utf-8")
    result = cli_world.cli.run("jobs", "apply", "--no-sync", str(path), **cli_world.env)
    try:
        assert result.returncode == 0, result.stderr
        assert_clean_output(result)
        with cli_world.engine.connect() as connection:
            rows = {row.id: row for row in connection.execute(select(Job))}
        assert rows["edge.unicode"].name == "🚀 Nightly sync ✓ 数据同步"
        assert rows["edge.unicode"].timezone == "Asia/Kathmandu"
        assert rows["edge.unicode"].public_cfg == {"名前": "Zoë 🚀"}
        assert rows["c" * 200].cron_expr == "0 0 29 2 *"
    finally:
        with cli_world.engine.begin() as connection:
            connection.execute(text("DELETE FROM job WHERE id <> 'keep.me'"))
