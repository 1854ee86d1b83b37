"""Faults with real processes: what ConnectHub does when its parts die under it.

- kill -9 of a worker AND its flow process together: the heartbeat automation crashes the run
  and the reconciler mirrors it into JobLog (CRASHED within 120 s of the kill; the seconds are
  printed as `[faults] ...` lines and recorded as junit properties).
- the Prefect server stopped while jobs are created, edited and deleted: every save stands and
  records its sync error; after a restart the sync loop converges with one deployment per job,
  no deployment left for the deleted job, the edited schedule updated in place (same schedule
  id) and no slot scheduled twice.
- PostgreSQL (a private cluster of this test, never the shared server) restarted during a run,
  and down at the moment the flow writes its final JobLog row: JobLog ends true, nothing is
  left RUNNING.
- the key file deleted or replaced: every entry point (`admin`, `worker`, `sync`, `sync --loop`,
  `reconcile`, `run`, `up`, the ASGI app under uvicorn) refuses to start, and a flow run whose
  secret cannot be decrypted ends FAILED naming the job and the key file, never the token.

Covered elsewhere, not repeated here: kill -9 of the flow process alone and cancellation
(test_engine), Prefect down on a single save (test_engine), two rotations at once and a rotation
killed half-way (test_fernet), a replaced or deleted key file for `jobs list/apply` and
`rotate-key` (test_cli).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from glob import glob
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from cryptography.fernet import Fernet
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowFilter,
    FlowFilterName,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import FlowRunSort
from sqlalchemy import update

from connecthub.core.config import get_settings
from connecthub.db import crud, joblog
from connecthub.db.engine import make_engine, reset_engine, session_scope
from connecthub.db.migrate import upgrade
from connecthub.db.models import Job
from connecthub.jobs.vocabulary import FLOW_NAME
from deployments.client import prefect_client, read_or_none
from deployments.loop import run_pass
from deployments.reconcile import Reconciler
from deployments.runs import run_now, wait_for_final
from deployments.sync import sync_all, sync_job
from tests.support.cli import Cli, one_line_error, save_jobs, tokens
from tests.support.jobs import (
    CANARY,
    assert_canary_absent_from_prefect,
    deployment,
    job_row,
    logs_of,
    save,
    wait_pid,
)
from tests.support.pg import create_pg_database, drop_pg_database, pg_url
from tests.support.processes import (
    REPO_ROOT,
    SERVER_START_TIMEOUT,
    free_port,
    processes_with_env,
    start_prefect_server,
    stop_process,
    wait_http,
)
from tests.support.settings import use_settings

pytestmark = pytest.mark.engine

SLEEP_JOB = "tests.plugins.jobs:SleepJob"
CRASH_DEADLINE_SECONDS = 120
WORKER_START_TIMEOUT = 90


def report(record_property, name: str, value: object) -> None:  # type: ignore[no-untyped-def]
    """A measured figure: printed (shown with -s / -rP) and kept in the junit XML."""
    print(f"[faults] {name}: {value}")
    record_property(name, value)


@contextlib.contextmanager
def connecthub_worker(log_path: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """A `connecthub worker` of its own (own process group) with `env` on top of os.environ."""
    full_env = {**os.environ, **env}
    full_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), full_env.get("PYTHONPATH")])
    )
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "connecthub.app.cli", "worker"],
            env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while b"started" not in log_path.read_bytes().lower():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield process
    finally:
        stop_process(process)


def kill_if_alive(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def latest_status(flow_run_id: str) -> str | None:
    row = joblog.latest_attempt(flow_run_id)
    return row.status if row else None


def open_log_count() -> int:
    return len(joblog.open_flow_run_ids())


def forget_jobs() -> None:
    """Delete every job of the current database and its deployment on the session's Prefect."""
    with session_scope() as session:
        job_ids = [job.id for job in crud.list_jobs(session)]
        for job_id in job_ids:
            crud.delete_job(session, job_id)
    for job_id in job_ids:
        sync_job(job_id)


# --- a) worker and flow process killed together ------------------------------------------------


def test_worker_and_flow_process_killed_together_is_crashed_within_120_s(
    pg_env: None, prefect_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    record_property,  # type: ignore[no-untyped-def]
):
    pool = f"faults-kill-{uuid4().hex[:8]}"
    use_settings(monkeypatch, CONNECTHUB_WORK_POOL=pool)  # the session worker never sees it
    pid_file = tmp_path / "pid"
    save("fault.kill-both", handler=SLEEP_JOB,
         public_cfg={"seconds": 600, "pid_file": str(pid_file)})
    assert sync_job("fault.kill-both").error is None
    assert deployment("fault.kill-both").work_pool_name == pool

    flow_pid = None
    try:
        with connecthub_worker(tmp_path / "worker.log") as worker_process:
            started = run_now("fault.kill-both")
            flow_pid = wait_pid(pid_file, timeout=90)
            assert flow_pid != worker_process.pid
            # The worker's whole process group first (`connecthub worker`, Prefect's worker and
            # the fork server, as when the machine kills them all), so that nothing is left to
            # notice the flow process dying: killing `connecthub worker` alone would SIGTERM
            # Prefect's worker, which could still see the run's exit and report it itself.
            os.killpg(worker_process.pid, signal.SIGKILL)
            os.kill(flow_pid, signal.SIGKILL)
            killed_at, killed_wall = time.monotonic(), datetime.now(UTC)
            worker_process.wait(timeout=10)
            assert latest_status(started.flow_run_id) == "RUNNING"

            reconciler = Reconciler()
            crashed_after = None
            while time.monotonic() - killed_at < CRASH_DEADLINE_SECONDS + 15:
                reconciler.run_once()  # what the sync/reconcile loop does every 15 s
                if latest_status(started.flow_run_id) == "CRASHED":
                    crashed_after = time.monotonic() - killed_at
                    break
                time.sleep(2)
    finally:
        if flow_pid is not None:
            kill_if_alive(flow_pid)
        with contextlib.suppress(Exception), prefect_client() as client:
            client.delete_deployment(deployment("fault.kill-both").id)
            client.delete_work_pool(pool)

    with prefect_client() as client:
        states = client.read_flow_run_states(UUID(started.flow_run_id))
    crashed_state = next((s for s in states if s.type.value == "CRASHED"), None)
    if crashed_state is not None:
        prefect_seconds = (crashed_state.timestamp - killed_wall).total_seconds()
        report(record_property, "kill_both_prefect_crashed_seconds", round(prefect_seconds, 1))
    assert crashed_after is not None, (
        f"JobLog not CRASHED {CRASH_DEADLINE_SECONDS + 15} s after the kill; Prefect states: "
        f"{[(s.type.value, s.name, s.timestamp) for s in states]}"
    )
    report(record_property, "kill_both_joblog_crashed_seconds", round(crashed_after, 1))
    assert crashed_after <= CRASH_DEADLINE_SECONDS
    (row,) = logs_of("fault.kill-both")
    assert row.status == "CRASHED" and row.finished_at is not None
    assert "heartbeat" in (row.error or "").lower()
    assert open_log_count() == 0


# --- b) Prefect server down while jobs change --------------------------------------------------


@dataclass
class PrivatePrefect:
    """A `prefect server start` of one test, on its own PostgreSQL database; restartable."""

    home: Path
    database: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> float:
        began = time.monotonic()
        self.process = start_prefect_server(
            self.home, self.port, pg_url(self.database, driver="asyncpg")
        )
        try:
            wait_http(f"{self.api_url}/health", SERVER_START_TIMEOUT, self.process)
        except Exception:
            self.stop()
            print((self.home / "server.log").read_text()[-5000:])
            raise
        return time.monotonic() - began

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


@pytest.fixture
def private_prefect(
    pg_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PrivatePrefect]:
    database = f"faults_prefect_{os.getpid()}"
    create_pg_database(database)
    # Schedule every deployment every 5 s (not 60 s), so an edited schedule gets its new runs
    # while the test waits for them.
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS", "5")
    server = PrivatePrefect(tmp_path / "prefect", database)
    try:
        server.start()
        use_settings(monkeypatch, PREFECT_API_URL=server.api_url)
        yield server
    finally:
        server.stop()
        drop_pg_database(database)


def flow_runs_of(deployment_id: UUID) -> list[FlowRun]:
    found: list[FlowRun] = []
    with prefect_client() as client:
        while True:
            page = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=200, offset=len(found),
            )
            found += page
            if len(page) < 200:
                return found


def wait_for_runs(deployment_id: UUID, minimum: int, timeout: float = 90) -> list[FlowRun]:
    deadline = time.monotonic() + timeout
    while True:
        runs = flow_runs_of(deployment_id)
        if len(runs) >= minimum or time.monotonic() > deadline:
            return runs
        time.sleep(2)


def test_prefect_down_while_jobs_change_converges_without_duplicates(
    private_prefect: PrivatePrefect, record_property  # type: ignore[no-untyped-def]
):
    save("pre.edit", cron_expr="*/2 * * * *")
    save("pre.gone", cron_expr="* * * * *")
    for job_id in ("pre.edit", "pre.gone"):
        assert sync_job(job_id).error is None
    before = deployment("pre.edit")
    (schedule,) = before.schedules
    gone_id = deployment("pre.gone").id
    assert wait_for_runs(before.id, 1), "the scheduler never scheduled pre.edit"

    private_prefect.stop()
    created = ["new.a", "new.b", "new.c"]
    for job_id in created:
        save(job_id, cron_expr="* * * * *")
        assert "not reachable" in (sync_job(job_id).error or "")
    save("pre.edit", cron_expr="*/3 * * * *")
    assert "not reachable" in (sync_job("pre.edit").error or "")
    with session_scope() as session:
        crud.delete_job(session, "pre.gone")
    assert "not reachable" in (sync_job("pre.gone").error or "")

    for job_id in [*created, "pre.edit"]:  # every save stood, with its sync error
        row = job_row(job_id)
        assert "not reachable" in (row.sync_error or "")
    assert job_row("pre.edit").cron_expr == "*/3 * * * *"
    with session_scope() as session:
        assert session.get(Job, "pre.gone") is None

    restart_seconds = private_prefect.start()
    restarted_at = datetime.now(UTC)
    report(record_property, "prefect_restart_seconds", round(restart_seconds, 1))
    reconciler = Reconciler()
    passes, began = 0, time.monotonic()
    while True:
        passes += 1
        assert passes <= 10, "the sync loop did not converge in 10 passes"
        if run_pass(reconciler):
            again = sync_all()
            if again.writes == 0 and not again.errors:
                break
        time.sleep(1)
    report(record_property, "prefect_down_convergence",
           f"{passes} pass(es), {time.monotonic() - began:.1f} s after the restart")

    expected = sorted([*created, "pre.edit"])
    with prefect_client() as client:
        everything = client.read_deployments(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME]))
        )
        assert read_or_none(lambda: client.read_deployment(gone_id)) is None
    names = [item.name for item in everything]
    assert sorted(names) == expected  # one each, none left for the deleted job
    by_name = {item.name: item for item in everything}
    for job_id in expected:
        row = job_row(job_id)
        assert row.sync_error is None and row.deployment_id == str(by_name[job_id].id)

    edited = by_name["pre.edit"]
    assert edited.id == before.id
    assert [item.id for item in edited.schedules] == [schedule.id]  # updated in place
    assert edited.schedules[0].schedule.cron == "*/3 * * * *"

    assert flow_runs_of(gone_id) == []  # its scheduled runs went with it
    for job_id in expected:
        runs = wait_for_runs(by_name[job_id].id, 3)
        assert len(runs) >= 3, f"{job_id}: the scheduler made {len(runs)} run(s)"
        slots = Counter(run.expected_start_time for run in runs)
        assert [slot for slot, count in slots.items() if count > 1] == [], job_id
    for run in flow_runs_of(edited.id):  # no slot of the old cron is still ahead
        if run.expected_start_time > restarted_at:
            assert run.expected_start_time.minute % 3 == 0, run.expected_start_time


# --- c) PostgreSQL restarted during a run ------------------------------------------------------


PG_BIN = Path(sorted(glob("/usr/lib/postgresql/*/bin"))[-1]) if glob(
    "/usr/lib/postgresql/*/bin") else Path("/usr/bin")


class PrivatePostgres:
    """A throw-away PostgreSQL cluster in a temp dir, run as the `postgres` user when root.

    Never the shared server: this one exists to be restarted and stopped under a running job.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="connecthub-faults-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)

    def _run(self, program: str, *args: str) -> None:
        argv = [str(PG_BIN / program), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{program} {args} failed: {result.stdout}{result.stderr}")

    @property
    def _options(self) -> str:
        return f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
                  "-E", "UTF8")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-o", self._options, "-l", str(self.log),
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-o", self._options, "-l",
                  str(self.log), "-w", "-t", "60", "restart")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Cluster:
    postgres: PrivatePostgres
    env: dict[str, str]
    worker_log: Path


@pytest.fixture(scope="module")
def cluster(
    pg_database: str, prefect_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """A private PostgreSQL cluster holding a migrated ConnectHub database, and a worker of its
    own (on its own work pool) whose flow runs use that database."""
    postgres = PrivatePostgres()
    try:
        postgres.init()
        postgres.start()
        engine = make_engine(postgres.url)
        upgrade(engine)
        engine.dispose()
        env = {"DB_URL": postgres.url, "CONNECTHUB_WORK_POOL": f"faults-pg-{uuid4().hex[:8]}"}
        with pytest.MonkeyPatch.context() as patch:
            use_settings(patch, **env)
            assert sync_job("no.such.job").error is None  # creates the pool before the worker
        use_settings(None)
        log = tmp_path_factory.mktemp("faults-pg") / "worker.log"
        with connecthub_worker(log, **env):
            yield Cluster(postgres, env, log)
    finally:
        postgres.destroy()


@pytest.fixture
def on_cluster(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """This test's ConnectHub settings point at the private cluster (restored afterwards)."""
    use_settings(monkeypatch, **cluster.env)
    try:
        yield cluster
    finally:
        forget_jobs()
        monkeypatch.undo()
        get_settings.cache_clear()
        reset_engine()


def test_postgres_restarted_during_a_run_ends_success(
    on_cluster: Cluster, tmp_path: Path, record_property  # type: ignore[no-untyped-def]
):
    pid_file = tmp_path / "pid"
    save("pg.restart", handler=SLEEP_JOB, public_cfg={"seconds": 10, "pid_file": str(pid_file)})
    started = run_now("pg.restart")
    wait_pid(pid_file, timeout=90)
    time.sleep(2)
    began = time.monotonic()
    on_cluster.postgres.restart()  # fast: every connection of the flow process is cut
    report(record_property, "postgres_restart_seconds", round(time.monotonic() - began, 1))

    final = wait_for_final(started.id, timeout_seconds=120)
    assert final.status == "SUCCESS", final.error
    assert final.result == {"slept": 10}
    Reconciler().run_once()
    assert open_log_count() == 0


def test_postgres_down_when_the_run_ends_still_records_the_truth(
    on_cluster: Cluster, tmp_path: Path, record_property  # type: ignore[no-untyped-def]
):
    """The plugin succeeds while the database is down; it comes back 8 s later. The job ran and
    succeeded, so JobLog must say SUCCESS with its result (a FAILED would invite a rerun of a
    job that already did its work), and nothing may stay RUNNING."""
    seconds = 6
    pid_file = tmp_path / "pid"
    save("pg.down", handler=SLEEP_JOB,
         public_cfg={"seconds": seconds, "pid_file": str(pid_file)})
    started = run_now("pg.down")
    wait_pid(pid_file, timeout=90)
    plugin_started = time.monotonic()
    time.sleep(seconds / 2)
    on_cluster.postgres.stop()
    try:
        time.sleep(max(0.0, plugin_started + seconds + 8 - time.monotonic()))
    finally:
        on_cluster.postgres.start()
    report(record_property, "postgres_down_seconds",
           round(time.monotonic() - plugin_started - seconds / 2, 1))

    final = wait_for_final(started.id, timeout_seconds=120)
    Reconciler().run_once()
    assert open_log_count() == 0
    report(record_property, "postgres_down_final_joblog", f"{final.status}: {final.error}")
    assert final.status == "SUCCESS", (
        f"the job succeeded but JobLog says {final.status}: {final.error}"
    )
    assert final.result == {"slept": seconds}


# --- d) key file deleted or replaced -----------------------------------------------------------


SECRET = "fault-key-secret-4b1d9e"


@pytest.fixture
def locked_out(sqlite_env: Path, tmp_path: Path) -> Cli:
    """A data dir (SQLite) holding an encrypted secret, and a `connecthub` runner for it."""
    cli = Cli(data_dir=sqlite_env, cwd=tmp_path)
    save_jobs({"example.hello": {"token": SECRET}, "plain.job": None})
    return cli


def entry_points(cli: Cli) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Every way ConnectHub starts: argv and environment of each."""
    connecthub = [sys.executable, "-m", "connecthub.app.cli"]
    env = cli.env()
    up_env = {
        key: value for key, value in env.items()
        if key not in ("DB_URL", "FERNET_KEY_PATH", "PREFECT_API_URL")
    }  # `up` finds the database and the key file under its own --data-dir
    up_env["CONNECTHUB_UP_TEST_MARKER"] = str(cli.data_dir)
    return {
        "admin": ([*connecthub, "admin", "--port", str(free_port())], env),
        "worker": ([*connecthub, "worker"], env),
        "sync": ([*connecthub, "sync"], env),
        "sync --loop": ([*connecthub, "sync", "--loop"], env),
        "reconcile": ([*connecthub, "reconcile"], env),
        "run": ([*connecthub, "run", "example.hello", "--wait"], env),
        "up": ([*connecthub, "up", "--data-dir", str(cli.data_dir), "--port", str(free_port()),
                "--prefect-port", str(free_port())], up_env),
        "uvicorn app": ([sys.executable, "-m", "uvicorn", "--factory",
                         "connecthub.app.main:create_app", "--port", str(free_port())], env),
    }


def run_entry_points(cli: Cli) -> dict[str, subprocess.CompletedProcess[str]]:
    """Start every entry point at once; each must exit by itself (killed and failed if not)."""
    started = {
        name: subprocess.Popen(
            argv, cwd=cli.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )
        for name, (argv, env) in entry_points(cli).items()
    }
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    try:
        for name, process in started.items():
            try:
                out, err = process.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                pytest.fail(f"`{name}` started instead of refusing to")
            results[name] = subprocess.CompletedProcess(name, process.returncode, out, err)
    finally:
        for process in started.values():
            stop_process(process)  # type: ignore[arg-type]
    return results


@pytest.mark.parametrize("fault", ["deleted", "replaced"])
def test_every_entry_point_fails_closed_without_its_key(locked_out: Cli, fault: str):
    key_path = locked_out.key_path
    (token,) = tokens(locked_out.db_path).values()
    if fault == "deleted":
        key_path.unlink()
        reason = "missing"
    else:
        key_path.write_text(Fernet.generate_key().decode() + "\n")
        reason = "cannot decrypt 1 of 1 stored secrets"
    key_before = key_path.read_bytes() if key_path.exists() else None

    results = run_entry_points(locked_out)

    for name, result in results.items():
        output = result.stdout + result.stderr
        assert SECRET not in output and token not in output, name
        if name == "uvicorn app":  # the ASGI app's own start-up refuses
            assert result.returncode != 0, output
            assert "Application startup failed" in output, output
            assert str(key_path) in output and reason in output, output
            continue
        line = one_line_error(result)
        assert str(key_path) in line and reason in line, (name, line)
    assert (key_path.read_bytes() if key_path.exists() else None) == key_before  # no new key
    assert processes_with_env(str(locked_out.data_dir)) == []  # `up` started nothing


def test_flow_run_with_an_unreadable_secret_fails_naming_job_and_key(
    pg_env: None, worker: Path
):
    save("key.lost", secret_cfg={"token": CANARY})
    # The token of another key file: what a worker whose key was replaced sees.
    foreign = Fernet(Fernet.generate_key()).encrypt(json.dumps({"token": CANARY}).encode())
    with session_scope() as session:
        session.execute(
            update(Job).where(Job.id == "key.lost").values(secret_cfg=foreign.decode())
        )
    started = run_now("key.lost")
    deadline = time.monotonic() + 120
    with prefect_client() as client:
        while not (state := client.read_flow_run(UUID(started.flow_run_id)).state).is_final():
            assert time.monotonic() < deadline, "the run never ended"
            time.sleep(0.5)
    # What the flow body itself recorded, before any reconcile pass could fill in for it.
    recorded_by_the_flow = latest_status(started.flow_run_id)

    final = wait_for_final(started.id, timeout_seconds=120)
    assert state.is_failed() and final.status == "FAILED"
    key_path = str(get_settings().key_path.resolve())
    assert "key.lost" in final.error and key_path in final.error, final.error
    for text in (final.error, final.traceback or "", worker.read_text()):
        assert CANARY not in text and foreign.decode()[:40] not in text
    assert_canary_absent_from_prefect(final.flow_run_id)
    forget_jobs()
    # The flow knows why it failed: JobLog must not depend on the reconcile loop to say so
    # (without the loop the row would stay RUNNING forever).
    assert recorded_by_the_flow == "FAILED", (
        f"the flow left JobLog {recorded_by_the_flow} after failing to decrypt"
    )
