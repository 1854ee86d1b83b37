"""Secret canary: run real jobs whose secret is a unique canary, then look for it everywhere.

One canary per test session (`cnry-<uuid4 hex>`) is the `token` secret of three jobs, run by a
real worker on a real Prefect server:

- `canary.ok`      EchoJob, succeeds;
- `canary.leaky`   LeakyFailingJob: in a step named after the secret, logs the secret and the
                   repr of the secrets, prints the secret and raises with it in the message;
- `canary.client`  FailingRequestJob: a BaseClient request to a local server with the canary as
                   bearer token and in `?api_key=`; the server answers 503 then 401 and echoes
                   the canary in its error bodies. It is run once more by the admin's Retry.

The runs go to a worker of our own (its own work pool, LOG_DIR set), so its output file and its
LOG_DIR hold exactly these runs. Then every surface is scanned for the canary, its hex core, its
base64 (standard and urlsafe, padded or not, at every byte alignment) and, outside
`job.secret_cfg`, for the Fernet tokens that hold it:

- every table and column of ConnectHub's database, except `job.secret_cfg`;
- every table of Prefect's own database;
- the output of every process started here: the worker and its flow processes, the admin,
  `jobs export`, and the Prefect server's log; the LOG_DIR files of the worker, the admin and
  the CLI;
- the Prefect API: flow runs (their names too) and their state history, task runs (the steps:
  names, states and their messages), deployments, flows, all logs, events (POST /events/filter
  over the test window, every page), artifacts (each run's JobLog link and result or error),
  variables, block documents, work pools, automations;
- every admin page a logged-in operator can GET (routes enumerated from the app, with the real
  job and JobLog ids), the search results, and every response (bodies and headers);
- `connecthub jobs export` in YAML and JSON.

Each test prints what it scanned (items and bytes): the figures of docs/reliability.md.
The target is zero hits, and each surface must also show that the runs really reached it.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import Engine
from starlette.routing import Mount, Route

from connecthub.app.main import create_app
from connecthub.db import crud
from connecthub.db.engine import get_engine, session_scope
from connecthub.db.models import Job, JobLog
from connecthub.jobs.spec import JobSpec
from deployments.runs import run_now, wait_for_final
from deployments.sync import remove_job, sync_job
from tests.support.http import Reply, ScriptedServer
from tests.support.pg import pg_url, prefect_database_name
from tests.support.processes import CLI, start_admin, start_worker, stop_process
from tests.support.settings import use_settings

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]

CANARY = f"cnry-{uuid4().hex}"
JOBS = {
    "canary.ok": "tests.plugins.jobs:EchoJob",
    "canary.leaky": "tests.plugins.jobs:LeakyFailingJob",
    "canary.client": "tests.plugins.canary:FailingRequestJob",
}
RUN_TIMEOUT = 240


# --- what to look for -----------------------------------------------------------------------


def encoded_forms(secret: str) -> dict[str, str]:
    """The secret and the strings that give it away: its random core, and its base64.

    Besides the whole value's base64 (standard and urlsafe, with and without padding), the
    secret may be encoded inside a longer value (e.g. "user:<secret>" in Basic auth), where its
    base64 depends on its byte offset modulo 3: for each offset, the part of the encoding that
    only the secret's bytes determine is a needle too.
    """
    raw = secret.encode()
    forms = {"plain": secret, "hex core": secret.removeprefix("cnry-")}
    for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
        whole = encode(raw).decode()
        forms[name] = whole
        forms[f"{name} unpadded"] = whole.rstrip("=")
        for offset in (0, 1, 2):
            encoded = encode(b"\0" * offset + raw).decode()
            first = 1 if offset else 0  # the first group mixes in the bytes before the secret
            last = (offset + len(raw)) // 3  # groups after this one mix in what follows
            forms[f"{name} inside a value, offset {offset}"] = encoded[4 * first : 4 * last]
    return forms


NEEDLES = encoded_forms(CANARY)


@dataclass
class Surface:
    """What was scanned on one surface, and where a needle was found."""

    name: str
    items: int = 0
    bytes: int = 0
    hits: list[str] = field(default_factory=list)

    def scan(self, where: str, content: str | bytes, extra: dict[str, str] | None = None) -> str:
        textual = content.decode("latin-1") if isinstance(content, bytes) else content
        self.items += 1
        self.bytes += len(textual.encode("utf-8", "replace"))
        variants = {textual, html.unescape(textual)}
        for needle_name, needle in {**NEEDLES, **(extra or {})}.items():
            if any(needle in variant for variant in variants):
                self.hits.append(f"{where}: {needle_name}")
        return textual

    def report(self) -> str:
        line = (
            f"{self.name}: {self.items} item(s), {self.bytes:,} bytes scanned, "
            f"{len(self.hits)} hit(s)"
        )
        print(f"\n[canary] {line}")
        return line

    def assert_clean(self, minimum_items: int = 1) -> None:
        self.report()
        assert self.items >= minimum_items, f"{self.name}: nothing was scanned"
        assert not self.hits, f"the canary leaked on {self.name}:\n" + "\n".join(self.hits[:50])


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("latin-1")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def scan_database(
    surface: Surface, engine: Engine, skip: Iterable[tuple[str, str]] = (), extra=None
) -> dict[str, int]:
    """Every column of every row of every table, as text; returns rows per table."""
    skipped = set(skip)
    rows_per_table: dict[str, int] = {}
    inspector = inspect(engine)
    for table in sorted(inspector.get_table_names()):
        columns = [c["name"] for c in inspector.get_columns(table)]
        wanted = [c for c in columns if (table, c) not in skipped]
        if not wanted:
            continue
        selected = ", ".join(f'"{c}"' for c in wanted)
        count = 0
        with engine.connect() as connection:
            for row in connection.execute(text(f'SELECT {selected} FROM "{table}"')):
                count += 1
                for column, value in zip(wanted, row, strict=True):
                    if value is not None:
                        surface.scan(f"{table}.{column}", as_text(value), extra)
        rows_per_table[table] = count
    return rows_per_table


# --- the world the canary ran in --------------------------------------------------------------


@dataclass
class World:
    started_at: datetime
    server: ScriptedServer
    flow_run_ids: list[str]
    logs: dict[str, JobLog]  # job id -> its final JobLog of run_now
    admin_retry: JobLog
    tokens: dict[str, str]  # what it is -> Fernet token (a needle like the canary's forms)
    worker_log: Path
    admin_log: Path
    log_dir: Path
    admin_pages: list[tuple[str, int, str]]  # (url, status, body + headers)
    exports: dict[str, subprocess.CompletedProcess[str]]
    prefect_server_log: Path


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the page has no CSRF token"
    return match.group(1)


def admin_get_paths(job_ids: list[str], log_ids: list[int]) -> list[str]:
    """Every GET route of the admin, made concrete with the real ids, plus list variants."""
    app = create_app()
    mount = next(r for r in app.routes if isinstance(r, Mount) and r.path == "/admin")
    pks = {"job": job_ids, "job-log": [str(log_id) for log_id in log_ids]}
    paths: list[str] = []
    for route in mount.routes:
        if not isinstance(route, Route) or "GET" not in (route.methods or set()):
            continue
        if route.name == "logout":
            continue  # the crawler visits it last
        templates = [route.path]
        for name, values in (("{identity}", list(pks)), ("{export_type}", ["csv", "json"])):
            templates = [
                t.replace(name, value) for t in templates for value in values
            ] if any(name in t for t in templates) else templates
        for template in templates:
            identity = "job-log" if template.startswith("/job-log") else "job"
            if "{column_name}" in template:  # SQLAdmin's file download/preview: every column
                model = JobLog if identity == "job-log" else Job
                templates_by_column = [
                    template.replace("{column_name}", column.name)
                    for column in model.__table__.columns
                ]
            else:
                templates_by_column = [template]
            for concrete in templates_by_column:
                if re.search(r"\{pk(:path)?\}", concrete):
                    paths += [re.sub(r"\{pk(:path)?\}", pk, concrete) for pk in pks[identity]]
                else:
                    paths.append(concrete)
    paths += [
        "/job/list?search=canary",
        "/job/list?search=canary.client&pageSize=100",
        "/job/list?sortBy=name&sort=desc",
        "/job-log/list?search=canary.leaky",
        "/job-log/list?status=FAILED&pageSize=100",
        "/job-log/list?job_id=canary.client",
        "/job-log/list?status=SUCCESS&job_id=canary.ok",
    ]
    assert all("{" not in path for path in paths), paths
    return [f"/admin{path}" for path in dict.fromkeys(paths)]


def job_log_ids() -> list[int]:
    with session_scope() as session:
        return list(session.scalars(
            select(JobLog.id).where(JobLog.job_id.in_(list(JOBS))).order_by(JobLog.id)
        ))


def wait_for_events(api_url: str, since: datetime, flow_run_ids: list[str]) -> None:
    """Prefect persists events asynchronously: wait until every run's final event is stored."""
    deadline = time.monotonic() + 60
    missing = set(flow_run_ids)
    while missing and time.monotonic() < deadline:
        for event in prefect_events(api_url, since)[1]:
            resource = event.get("resource", {}).get("prefect.resource.id", "")
            if event.get("event", "").endswith((".Completed", ".Failed")):
                missing.discard(resource.removeprefix("prefect.flow-run."))
        if missing:
            time.sleep(1)
    assert not missing, f"no final event stored for flow runs {missing}"


def prefect_events(api_url: str, since: datetime) -> tuple[list[str], list[dict[str, Any]]]:
    """Every page of POST /events/filter from `since` to now: raw bodies and the events."""
    until = datetime.now(UTC) + timedelta(minutes=1)
    body = {
        "filter": {"occurred": {"since": since.isoformat(), "until": until.isoformat()}},
        "limit": 50,
    }
    pages: list[str] = []
    events: list[dict[str, Any]] = []
    total = None
    with httpx.Client(timeout=30) as client:
        response = client.post(f"{api_url}/events/filter", json=body)
        while True:
            response.raise_for_status()
            pages.append(response.text)
            page = response.json()
            events += page["events"]
            total = page["total"] if total is None else total
            if not page.get("next_page"):
                break
            response = client.get(page["next_page"])
    assert len(events) == total, f"paged through {len(events)} of {total} events"
    return pages, events


@pytest.fixture(scope="module")
def world(
    pg_database: str,
    prefect_server: str,
    session_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    started_at = datetime.now(UTC) - timedelta(seconds=5)
    home = tmp_path_factory.mktemp("canary")
    log_dir = home / "logdir"
    pool = f"connecthub-canary-{uuid4().hex[:8]}"
    processes: list[subprocess.Popen[bytes]] = []
    with pytest.MonkeyPatch.context() as patch, ScriptedServer() as server:
        use_settings(patch, CONNECTHUB_WORK_POOL=pool)
        # Each attempt of canary.client gets a 503 (retried) then a 401 that names the token.
        for _ in range(2):
            server.script(
                Reply(503, {"echo": f"Bearer {CANARY}"}, headers={"Retry-After": "0"}),
                Reply(401, {"error": f"token {CANARY} rejected", "url": f"?api_key={CANARY}"}),
            )
        env = dict(os.environ)
        env["LOG_DIR"] = str(log_dir)
        env["PYTHONUNBUFFERED"] = "1"
        try:
            worker_log = home / "worker.log"
            processes.append(start_worker(worker_log, env))

            with session_scope() as session:
                for job_id, handler in JOBS.items():
                    public = {"base_url": server.url} if job_id == "canary.client" else {}
                    crud.save_job(session, JobSpec(
                        id=job_id, handler_path=handler, cron_expr="0 3 1 1 *",
                        public_cfg=public, secret_cfg={"token": CANARY},
                    ))
            for job_id in JOBS:
                assert sync_job(job_id).error is None
            started = {job_id: run_now(job_id) for job_id in JOBS}
            logs = {
                job_id: wait_for_final(log.id, timeout_seconds=RUN_TIMEOUT)
                for job_id, log in started.items()
            }

            admin_log = home / "admin.log"
            admin, base_url = start_admin(admin_log, env)
            processes.append(admin)
            with httpx.Client(base_url=base_url, follow_redirects=False, timeout=30) as client:
                pages: list[tuple[str, int, str]] = []

                def keep(response: httpx.Response) -> httpx.Response:
                    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
                    pages.append((str(response.url), response.status_code,
                                  f"{response.text}\n{headers}"))
                    return response

                keep(client.get("/admin/login"))
                login = keep(client.post(
                    "/admin/login",
                    data={"username": os.environ["ADMIN_USERNAME"],
                          "password": os.environ["ADMIN_PASSWORD"]},
                ))
                assert login.status_code == 302, login.text
                # The operator retries the failed client run from its JobLog page.
                failed_id = logs["canary.client"].id
                details = keep(client.get(f"/admin/job-log/details/{failed_id}"))
                retried = keep(client.post(
                    f"/admin/job-log/retry/{failed_id}",
                    data={"use": "snapshot", "csrf_token": csrf_of(details.text)},
                ))
                assert retried.status_code == 303, retried.text
                new_id = int(retried.headers["location"].rstrip("/").rsplit("/", 1)[1])
                assert new_id != failed_id
                admin_retry = wait_for_final(new_id, timeout_seconds=RUN_TIMEOUT)
                for path in admin_get_paths(list(JOBS), job_log_ids()):
                    keep(client.get(path))
                keep(client.get("/admin/logout"))
            # Stopped before scanning, so that their output is complete and flushed.
            for process in reversed(processes):
                stop_process(process)

            exports = {
                fmt: subprocess.run(
                    [*CLI, "jobs", "export", "--format", fmt], env=env, cwd=home,
                    capture_output=True, text=True, timeout=120,
                )
                for fmt in ("yaml", "json")
            }
            flow_run_ids = sorted(
                {log.flow_run_id for log in logs.values()} | {admin_retry.flow_run_id}
            )
            wait_for_events(prefect_server, started_at, flow_run_ids)
            with session_scope() as session:
                tokens = {
                    f"Fernet token of {job.id}": job.secret_cfg
                    for job in session.scalars(select(Job).where(Job.id.in_(list(JOBS))))
                    if job.secret_cfg
                }
            yield World(
                started_at=started_at,
                server=server,
                flow_run_ids=flow_run_ids,
                logs=logs,
                admin_retry=admin_retry,
                tokens=tokens,
                worker_log=worker_log,
                admin_log=admin_log,
                log_dir=log_dir,
                admin_pages=pages,
                exports=exports,
                prefect_server_log=session_dir / "prefect" / "server.log",
            )
        finally:
            for process in reversed(processes):
                stop_process(process)
            with session_scope() as session:
                deployments = {
                    job.id: job.deployment_id
                    for job in session.scalars(select(Job).where(Job.id.in_(list(JOBS))))
                }
            for job_id, deployment_id in deployments.items():
                remove_job(job_id, deployment_id)
            with get_engine().begin() as connection:
                connection.execute(text("TRUNCATE job_log, job RESTART IDENTITY"))
    use_settings(None, PREFECT_API_URL=prefect_server)


# --- the runs really happened -----------------------------------------------------------------


def test_the_scanner_finds_every_form_of_the_canary() -> None:
    """The scans below can only fail if the scanner sees what it looks for."""
    leaks = {
        "plain": f"token={CANARY}&page=1",
        "repr in a dict": repr({"token": CANARY}),
        "html-escaped": html.escape(f"<b>{CANARY}</b>"),
        "base64": base64.b64encode(CANARY.encode()).decode(),
        "base64url without padding": base64.urlsafe_b64encode(CANARY.encode()).decode().rstrip("="),
        "Basic auth": "Basic " + base64.b64encode(f"user:{CANARY}".encode()).decode(),
        "base64 at offset 2": base64.b64encode(f"ab{CANARY}xyz".encode()).decode(),
        "hex core only": CANARY.removeprefix("cnry-"),
        "Fernet token": "stored gAAAAB-the-token here",
        "bytes": f"\x00\xff{CANARY}".encode("latin-1"),
    }
    for name, content in leaks.items():
        surface = Surface("self-test")
        surface.scan(name, content, {"Fernet token": "gAAAAB-the-token"})
        assert surface.hits, f"the scanner missed the canary as {name}"
    clean = Surface("self-test")
    clean.scan("clean", f"token=*** {CANARY[:-1]}x {base64.b64encode(b'other').decode()}")
    assert not clean.hits


def test_the_canary_jobs_ran_and_used_the_secret(world: World) -> None:
    assert world.logs["canary.ok"].status == "SUCCESS"
    assert world.logs["canary.ok"].result == {"params": {}, "secret_keys": ["token"]}
    leaky = world.logs["canary.leaky"]
    assert leaky.status == "FAILED"
    assert "remote refused token ***" in leaky.error
    client = world.logs["canary.client"]
    assert client.status == "FAILED"
    assert "HTTPStatusError" in client.error and "401" in client.error
    assert "api_key=***" in client.error
    retry = world.admin_retry
    assert retry.status == "FAILED" and retry.retry_of == client.id and retry.trigger == "retry"
    # The secret really went out: in the Authorization header and the query, on every attempt.
    assert len(world.server.received) == 4
    for request in world.server.received:
        assert request.headers["Authorization"] == f"Bearer {CANARY}"
        assert f"api_key={CANARY}" in request.path
    assert len(world.flow_run_ids) == 4
    assert len(world.tokens) == 3
    for token in world.tokens.values():
        assert CANARY not in token and token.startswith("gAAAA")


# --- ConnectHub's and Prefect's databases ---------------------------------------------------


def test_no_canary_in_connecthub_database(world: World) -> None:
    surface = Surface("ConnectHub database (every table and column but job.secret_cfg)")
    rows = scan_database(
        surface, get_engine(), skip=[("job", "secret_cfg")],
        extra=world.tokens,
    )
    print(f"\n[canary] ConnectHub tables scanned: {rows}")
    assert rows["job"] == 3 and len(job_log_ids()) == 4
    assert {"alembic_version", "job", "job_log"} <= set(rows)
    surface.assert_clean(minimum_items=20)


def test_no_canary_in_prefect_database(world: World, prefect_server: str) -> None:
    engine = create_engine(pg_url(prefect_database_name()))
    try:
        surface = Surface("Prefect's own database (every table)")
        rows = scan_database(surface, engine, extra=world.tokens)
        with engine.connect() as connection:
            run_logs = connection.execute(
                text("SELECT count(*) FROM log WHERE flow_run_id = ANY(CAST(:ids AS uuid[]))"),
                {"ids": world.flow_run_ids},
            ).scalar_one()
    finally:
        engine.dispose()
    print(f"\n[canary] Prefect tables scanned: {len(rows)}, rows: {sum(rows.values())}")
    assert run_logs > 0 and rows["flow_run"] >= 4 and rows["events"] > 0
    surface.assert_clean(minimum_items=100)


# --- process output and log files -----------------------------------------------------------


def test_no_canary_in_worker_and_flow_process_output(world: World) -> None:
    surface = Surface("worker + flow processes stdout/stderr")
    output = surface.scan(str(world.worker_log), world.worker_log.read_bytes(), world.tokens)
    # The file holds these runs: the plugin's print and log lines came through, masked.
    for flow_run_id in world.flow_run_ids:
        assert flow_run_id in output
    assert "printing the token ***" in output
    assert "about to use token ***" in output
    assert "api_key=***" in output
    surface.assert_clean()


def test_no_canary_in_log_dir_and_other_process_output(world: World) -> None:
    surface = Surface("LOG_DIR files + admin, export and Prefect server output")
    files = sorted(path for path in world.log_dir.rglob("*") if path.is_file())
    assert files, f"nothing was written to LOG_DIR {world.log_dir}"
    log_dir_text = ""
    for path in files:
        log_dir_text += surface.scan(str(path), path.read_bytes(), world.tokens)
    assert "admin login of" in log_dir_text  # the admin wrote its log there
    # ... and so did the flow processes: the plugin's own lines, masked.
    assert "about to use token ***" in log_dir_text
    assert surface.scan(str(world.admin_log), world.admin_log.read_bytes(), world.tokens)
    for fmt, result in world.exports.items():
        surface.scan(f"jobs export --format {fmt} (stderr)", result.stderr, world.tokens)
    assert world.prefect_server_log.exists()
    surface.scan(str(world.prefect_server_log), world.prefect_server_log.read_bytes(), world.tokens)
    print(f"\n[canary] LOG_DIR files: {[path.name for path in files]}")
    surface.assert_clean(minimum_items=5)


# --- the Prefect API --------------------------------------------------------------------------


def _paged(client: httpx.Client, path: str, body: dict[str, Any]) -> list[str]:
    pages = []
    offset = 0
    while True:
        response = client.post(path, json={**body, "limit": 200, "offset": offset})
        response.raise_for_status()
        pages.append(response.text)
        count = len(response.json())
        if count < 200:
            return pages
        offset += count


def test_no_canary_in_the_prefect_api(world: World, prefect_server: str) -> None:
    surface = Surface("Prefect API")
    counts: dict[str, int] = {}
    with httpx.Client(base_url=prefect_server, timeout=30) as client:
        def scan_json(where: str, body: str) -> Any:
            parsed = json.loads(body)
            surface.scan(where, body, world.tokens)
            surface.scan(where + " (decoded)", json.dumps(parsed, ensure_ascii=False))
            return parsed

        flow_runs: list[dict[str, Any]] = []
        for page in _paged(client, "/flow_runs/filter", {}):
            flow_runs += scan_json("flow runs", page)
        counts["flow runs"] = len(flow_runs)
        assert set(world.flow_run_ids) <= {run["id"] for run in flow_runs}
        names = [run["name"] for run in flow_runs if run["id"] in world.flow_run_ids]
        assert all(name.startswith(tuple(JOBS)) and " · " in name for name in names), names
        states = 0
        for run in flow_runs:
            response = client.get("/flow_run_states/", params={"flow_run_id": run["id"]})
            response.raise_for_status()
            states += len(scan_json(f"states of flow run {run['id']}", response.text))
        counts["flow run states"] = states

        for name, path, body in (
            ("task runs", "/task_runs/filter", {}),
            ("deployments", "/deployments/filter", {}),
            ("flows", "/flows/filter", {}),
            ("logs", "/logs/filter", {"sort": "TIMESTAMP_ASC"}),
            ("artifacts", "/artifacts/filter", {}),
            ("variables", "/variables/filter", {}),
            ("work pools", "/work_pools/filter", {}),
        ):
            items = [item for page in _paged(client, path, body) for item in scan_json(name, page)]
            counts[name] = len(items)
            if name == "logs":
                run_logs = [item for item in items if item["flow_run_id"] in world.flow_run_ids]
                assert run_logs, "no logs of the canary runs in Prefect"
                assert any("***" in item["message"] for item in run_logs)
            if name == "deployments":
                assert set(JOBS) <= {item["name"] for item in items}
            of_runs = [item for item in items if item.get("flow_run_id") in world.flow_run_ids]
            if name == "task runs":  # the steps reached Prefect, their names masked
                assert "call the remote with ***" in {item["name"] for item in of_runs}
                assert {"load job", "run plugin"} <= {item["name"] for item in of_runs}
            if name == "artifacts":  # every run has its JobLog link, the failed their error
                assert {item["flow_run_id"] for item in of_runs} == set(world.flow_run_ids)
                assert any("remote refused token ***" in item["data"] for item in of_runs)

        response = client.post("/block_documents/filter", json={"include_secrets": True})
        response.raise_for_status()
        counts["block documents"] = len(scan_json("block documents", response.text))
        response = client.post("/automations/filter", json={})
        response.raise_for_status()
        counts["automations"] = len(scan_json("automations", response.text))

    pages, events = prefect_events(prefect_server, world.started_at)
    for page in pages:
        scan_json("events", page)
    counts["events"] = len(events)
    counts["event pages"] = len(pages)
    run_events = [
        event for event in events
        if event["resource"]["prefect.resource.id"].removeprefix("prefect.flow-run.")
        in world.flow_run_ids
    ]
    assert run_events, "no events of the canary runs"
    print(f"\n[canary] Prefect API items: {counts}")
    surface.assert_clean(minimum_items=20)


# --- the admin and the CLI --------------------------------------------------------------------


def test_no_canary_in_any_admin_page_or_response(world: World) -> None:
    surface = Surface("admin pages and responses")
    statuses: dict[int, int] = {}
    for url, status, body in world.admin_pages:
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, (url, status)
        surface.scan(url, body, world.tokens)
    print(f"\n[canary] admin responses by status: {dict(sorted(statuses.items()))}")
    visited = {url.split("://", 1)[1].split("/", 1)[1] for url, _status, _body in world.admin_pages}
    for log_id in job_log_ids():
        assert f"admin/job-log/details/{log_id}" in visited
    for job_id in JOBS:
        assert f"admin/job/details/{job_id}" in visited
        assert f"admin/job/edit/{job_id}" in visited
    pages = {url: body for url, _status, body in world.admin_pages}
    leaky_details = next(
        body for url, body in pages.items()
        if url.endswith(f"/admin/job-log/details/{world.logs['canary.leaky'].id}")
    )
    assert "remote refused token ***" in html.unescape(leaky_details)  # the error is shown
    surface.assert_clean(minimum_items=25)


def test_no_canary_in_jobs_export(world: World) -> None:
    surface = Surface("connecthub jobs export (yaml, json)")
    for fmt, result in world.exports.items():
        assert result.returncode == 0, result.stderr
        output = surface.scan(f"jobs export --format {fmt}", result.stdout, world.tokens)
        for job_id in JOBS:
            assert job_id in output
        assert "secret_cfg" not in output
    surface.assert_clean(minimum_items=2)
