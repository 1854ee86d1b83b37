"""Warm start: flow runs forked from `deployments.forkserver`, through `deployments.launcher`.

Real processes only: a `prefect server start` on PostgreSQL, the fork server, and a Prefect
process worker on a pool whose command is `python -m deployments.launcher`, all started once for
this module with their own PREFECT_HOME, database, socket and logs (under pytest's tmp dir). The
flows are small ones written for the tests (tests/… is not needed on the path): one that reports
its process, one that reads a plugin module from disk, one that sleeps, one that aborts.

The Prefect server is tests/support/processes.py's; the fork server, worker and deployments are
this module's own (not tests/engine.py's session worker), and every wait polls a condition with
a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deployments.launcher import RUN_NICENESS
from tests.support.processes import prefect_server_on_postgres, stop_process

pytestmark = pytest.mark.engine

REPO_ROOT = Path(__file__).resolve().parents[1]
LAUNCHER_COMMAND = "python -m deployments.launcher"
FINAL_TIMEOUT = 60

FLOWS = textwrap.dedent(
    """
    import importlib, json, os, sys, threading, time
    from prefect import flow

    def _report(out, **extra):
        info = {"pid": os.getpid(), "ppid": os.getppid(), "sid": os.getsid(0),
                "nice": os.getpriority(os.PRIO_PROCESS, 0),
                "autogroup": open("/proc/self/autogroup").read().split()[-1], **extra}
        with open(out + ".tmp", "w") as f:
            json.dump(info, f)
        os.replace(out + ".tmp", out)

    @flow(persist_result=False)
    def report(out: str) -> None:
        _report(out, cwd=os.getcwd(), fds=sorted(int(fd) for fd in os.listdir("/proc/self/fd")))

    @flow(persist_result=False)
    def plugin(out: str) -> None:
        module = importlib.import_module("warm_plugin")
        _report(out, value=module.VALUE)

    @flow(persist_result=False)
    def sleeper(out: str, seconds: float = 120) -> None:
        _report(out)
        time.sleep(seconds)

    @flow(persist_result=False)
    def aborter(out: str) -> None:
        _report(out)
        os.abort()
    """
)


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.2
             ) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@dataclass
class Stack:
    env: dict[str, str]
    tmp: Path
    code: Path
    pool: str
    socket_path: Path
    fork_server: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    fork_server_log: Path
    worker_log: Path
    deployments: dict[str, str]
    prefect_home: Path

    def start_fork_server(self) -> None:
        self.fork_server = popen([sys.executable, "-m", "deployments.forkserver"], self.env,
                                 self.fork_server_log)
        wait_for(lambda: f"fork server {self.fork_server.pid} listening"
                 in self.fork_server_log.read_text(), 60, "fork server listening")

    def client(self) -> Any:
        return api_client(self.env["PREFECT_API_URL"])

    def run(self, flow: str, job_variables: dict[str, Any] | None = None, **parameters: Any
            ) -> tuple[str, Path]:
        out = self.tmp / f"{flow}-{uuid.uuid4().hex}.json"
        with self.client() as client:
            run = client.create_flow_run_from_deployment(
                self.deployments[flow], parameters={"out": str(out), **parameters},
                job_variables=job_variables,
            )
        return str(run.id), out

    def state(self, flow_run_id: str) -> Any:
        with self.client() as client:
            return client.read_flow_run(uuid.UUID(flow_run_id)).state

    def final_state(self, flow_run_id: str, timeout: float = FINAL_TIMEOUT) -> Any:
        return wait_for(
            lambda: (state := self.state(flow_run_id)) and state.is_final() and state,
            timeout, f"flow run {flow_run_id} final", interval=0.25,
        )

    def report(self, out: Path, timeout: float = FINAL_TIMEOUT) -> dict[str, Any]:
        wait_for(out.exists, timeout, f"{out.name} written")
        return json.loads(out.read_text())

    def launcher_of(self, flow_run_id: str) -> int:
        """The pid of the launcher the worker started for `flow_run_id`."""
        def find() -> int | None:
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                    environ = (entry / "environ").read_bytes().split(b"\0")
                except OSError:
                    continue
                if (b"deployments.launcher" in cmdline
                        and f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode() in environ):
                    return int(entry.name)
            return None

        return wait_for(find, 30, f"launcher of {flow_run_id}")


def popen(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, cwd=REPO_ROOT, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A real `prefect server start` on a PostgreSQL database of its own."""
    home = tmp_path_factory.mktemp("warm-prefect")
    # INFO: the server's log lists every request (uvicorn's access log), which a test counts.
    with prefect_server_on_postgres(home, f"warm_start_{os.getpid()}",
                                    PREFECT_SERVER_LOGGING_LEVEL="INFO") as api_url:
        yield api_url, home


@pytest.fixture(scope="module")
def stack(prefect_api: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:
    api_url, home = prefect_api
    tmp = tmp_path_factory.mktemp("warm")
    code = tmp / "code"
    code.mkdir()
    (code / "warm_flows.py").write_text(FLOWS)
    (code / "warm_plugin.py").write_text("VALUE = 1\n")
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        "CONNECTHUB_FORKSERVER_SOCKET": str(tmp / "forkserver.sock"),
        "DATA_DIR": str(tmp / "data"),
        # `python` in the pool's command is this interpreter, as `connecthub worker` arranges.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    os.environ["PREFECT_API_URL"] = api_url
    os.environ["PREFECT_HOME"] = str(home)
    pool = f"warm-{uuid.uuid4().hex[:8]}"
    deployments = create_deployments(pool, code)
    fork_server_log, worker_log = tmp / "forkserver.log", tmp / "worker.log"
    result = Stack(env=env, tmp=tmp, code=code, pool=pool, socket_path=tmp / "forkserver.sock",
                   fork_server=None, worker=None,  # type: ignore[arg-type]
                   fork_server_log=fork_server_log, worker_log=worker_log,
                   deployments=deployments, prefect_home=home)
    result.start_fork_server()
    result.worker = popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool,
                           "--type", "process"], env, worker_log)
    try:
        wait_for(lambda: "started" in worker_log.read_text().lower(), 90, "worker started")
        yield result
    finally:
        stop_process(result.worker)
        stop_process(result.fork_server)
        print(f"--- fork server log\n{fork_server_log.read_text()[-4000:]}")
        print(f"--- worker log\n{worker_log.read_text()[-8000:]}")


def api_client(api_url: str) -> Any:
    """A client of the test's server by its URL: Prefect's settings were read (and may point
    elsewhere, or nowhere: then `get_client` would start a temporary server) before it started."""
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(api_url)


def create_deployments(pool: str, code: Path) -> dict[str, str]:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    template["variables"]["properties"]["command"]["default"] = LAUNCHER_COMMAND
    ids = {}
    with api_client(os.environ["PREFECT_API_URL"]) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process",
                                               base_job_template=template))
        for name in ("report", "plugin", "sleeper", "aborter"):
            flow_id = client.create_flow_from_name(name)
            ids[name] = str(client.create_deployment(
                flow_id=flow_id, name=pool, work_pool_name=pool,
                entrypoint=f"warm_flows.py:{name}", path=str(code),
                pull_steps=[{"prefect.deployments.steps.set_working_directory": {
                    "directory": str(code)}}],
            ))
    return ids


def test_a_run_completes_in_a_process_forked_from_the_fork_server(stack: Stack) -> None:
    flow_run_id, out = stack.run("report")
    assert stack.final_state(flow_run_id).is_completed()
    info = stack.report(out)
    assert info["ppid"] == stack.fork_server.pid
    assert info["sid"] == info["pid"]  # a session of its own
    assert info["cwd"] == str(stack.code)  # the deployment's pull step ran in the child
    assert info["fds"][:3] == [0, 1, 2]
    assert len(info["fds"]) < 20  # the fork server's own fds stay behind
    assert (info["nice"], info["autogroup"]) == (RUN_NICENESS, str(RUN_NICENESS))
    log = stack.fork_server_log.read_text()
    assert f"forked pid {info['pid']} for flow run {flow_run_id} (threads at fork: 1)" in log
    # The run's own output reaches the worker through the fds its launcher passed on.
    wait_for(lambda: "Finished in state Completed()" in stack.worker_log.read_text(), 30,
             "the run's log line in the worker's output")


def test_runs_inherit_the_fork_servers_check_of_the_server_version(stack: Stack) -> None:
    server_log = stack.prefect_home / "server.log"

    def version_checks() -> int:
        return server_log.read_text().count("GET /api/admin/version")

    assert version_checks() >= 2  # the fork server's: one per key its children's clients use
    assert "version was not checked" not in stack.fork_server_log.read_text()
    before = version_checks()
    flow_run_id, out = stack.run("report")
    assert stack.final_state(flow_run_id).is_completed()
    assert stack.report(out)["ppid"] == stack.fork_server.pid
    # Its clients checked nothing the fork server had not checked already (three requests per
    # run before; made at its start, long before its Completed state).
    assert version_checks() == before


PRELOADED_STATE = textwrap.dedent("""
    import json
    from deployments.forkserver import preload
    preload()
    import pydantic
    import prefect.client.schemas.objects  # noqa: F401 - its models are what runs validate
    from prefect.flows import load_flow_from_entrypoint
    from connecthub.db.models import Job
    from deployments.client import ENTRYPOINT
    import flows.execute_job

    models, incomplete = list(pydantic.BaseModel.__subclasses__()), []
    while models:
        model = models.pop()
        models.extend(model.__subclasses__())
        if model.__module__.startswith("prefect.") and not model.__pydantic_complete__:
            incomplete.append(model.__qualname__)
    print(json.dumps({
        "incomplete": incomplete,
        "mappers_configured": Job.__mapper__.configured,
        "entrypoint_is_preloaded": load_flow_from_entrypoint(ENTRYPOINT)
        is flows.execute_job.execute_job,
    }))
""")


def test_the_fork_server_leaves_its_children_nothing_to_build_on_first_use() -> None:
    """What each run did on first use is done once before the fork: Prefect's pydantic models
    have their validators, SQLAlchemy's mappers are configured, and the deployments' entrypoint
    is the module the fork server imported (a file path executed it again in every run)."""
    result = subprocess.run(
        [sys.executable, "-c", PRELOADED_STATE], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parents[1], timeout=120,
    )
    state = json.loads(result.stdout.strip().splitlines()[-1])
    assert state == {
        "incomplete": [], "mappers_configured": True, "entrypoint_is_preloaded": True,
    }


def test_the_fork_server_forks_with_one_thread_and_never_imports_plugins(stack: Stack) -> None:
    tasks = os.listdir(f"/proc/{stack.fork_server.pid}/task")
    assert tasks == [str(stack.fork_server.pid)]
    flow_run_id, out = stack.run("sleeper", seconds=2)
    stack.report(out)
    assert os.listdir(f"/proc/{stack.fork_server.pid}/task") == tasks  # also during a run
    assert stack.final_state(flow_run_id).is_completed()
    log = stack.fork_server_log.read_text().splitlines()
    forks = [line for line in log if "forked pid" in line]
    assert forks and all("(threads at fork: 1)" in line for line in forks)
    # What the fork server imports: no plugin package, no thread, no open fd.
    probe = subprocess.run(
        [sys.executable, "-c", textwrap.dedent("""
            import json, sys
            from deployments import forkserver
            before = forkserver.open_fds()
            forkserver.preload()
            plugins = {"extensions", "examples"}
            print(json.dumps({
                "plugins": [m for m in sys.modules if m.split(".")[0] in plugins],
                "threads": forkserver.thread_count(),
                "new_fds": sorted(forkserver.open_fds() - before),
                "driver": "psycopg" in sys.modules,
            }))
        """)],
        # A database that does not exist: the driver is imported, nothing connects.
        env={**stack.env, "DB_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"},
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    )
    assert json.loads(probe.stdout.splitlines()[-1]) == {
        "plugins": [], "threads": 1, "new_fds": [], "driver": True
    }


def test_edited_plugin_code_runs_on_the_next_run_without_a_restart(stack: Stack) -> None:
    first_id, first_out = stack.run("plugin")
    assert stack.final_state(first_id).is_completed()
    assert stack.report(first_out)["value"] == 1
    plugin = stack.code / "warm_plugin.py"
    plugin.write_text("VALUE = 2\n")
    os.utime(plugin, (time.time() + 5, time.time() + 5))  # a new mtime, whatever the clock
    second_id, second_out = stack.run("plugin")
    assert stack.final_state(second_id).is_completed()
    second = stack.report(second_out)
    assert second["value"] == 2
    assert second["ppid"] == stack.fork_server.pid


def test_kill_9_of_the_run_process_marks_the_run_crashed(stack: Stack) -> None:
    flow_run_id, out = stack.run("sleeper")
    pid = stack.report(out)["pid"]
    os.kill(pid, signal.SIGKILL)
    state = stack.final_state(flow_run_id, timeout=30)
    assert state.is_crashed(), state


def test_kill_9_of_the_launcher_kills_its_run_and_marks_it_crashed(stack: Stack) -> None:
    flow_run_id, out = stack.run("sleeper")
    pid = stack.report(out)["pid"]
    os.kill(stack.launcher_of(flow_run_id), signal.SIGKILL)
    state = stack.final_state(flow_run_id, timeout=30)
    assert state.is_crashed(), state
    wait_for(lambda: not pid_alive(pid), 10, "the run process gone")


def test_prefect_flow_run_cancel_cancels_the_run_within_30_s(stack: Stack) -> None:
    flow_run_id, out = stack.run("sleeper")
    pid = stack.report(out)["pid"]
    subprocess.run([sys.executable, "-m", "prefect", "flow-run", "cancel", flow_run_id],
                   env=stack.env, check=True, capture_output=True)
    state = stack.final_state(flow_run_id, timeout=30)
    assert state.is_cancelled(), state
    wait_for(lambda: not pid_alive(pid), 30, "the run process gone")


def test_os_abort_in_the_flow_kills_only_that_run(stack: Stack) -> None:
    other_id, other_out = stack.run("sleeper", seconds=20)
    other_pid = stack.report(other_out)["pid"]
    flow_run_id, out = stack.run("aborter")
    stack.report(out)
    state = stack.final_state(flow_run_id)
    assert state.is_crashed(), state
    assert pid_alive(other_pid) and stack.fork_server.poll() is None
    assert stack.final_state(other_id).is_completed()
    after_id, _ = stack.run("report")
    assert stack.final_state(after_id).is_completed()


def test_a_run_the_fork_server_cannot_serve_faithfully_starts_cold(stack: Stack) -> None:
    # PYTHON* variables shape an interpreter at start-up: a run that sets others gets its own.
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    flow_run_id, out = stack.run("report", job_variables={"env": {"PYTHONHASHSEED": seed}})
    assert stack.final_state(flow_run_id).is_completed()
    info = stack.report(out)
    assert info["ppid"] == stack.worker.pid  # exec'd by its launcher
    # In the worker's session: its own niceness is lowered, the session's (the worker's) not.
    worker_autogroup = Path(f"/proc/{stack.worker.pid}/autogroup").read_text().split()[-1]
    assert info["nice"] == RUN_NICENESS
    assert info["autogroup"] == worker_autogroup != str(RUN_NICENESS)
    assert "the PYTHON* environment differs" in stack.fork_server_log.read_text()
    assert "starting a fresh interpreter" in stack.worker_log.read_text()


def test_kill_9_of_the_fork_server_crashes_its_runs_and_later_runs_start_cold(
    stack: Stack,
) -> None:
    flow_run_id, out = stack.run("sleeper")
    pid = stack.report(out)["pid"]
    stack.fork_server.kill()
    stack.fork_server.wait()
    state = stack.final_state(flow_run_id, timeout=30)
    assert state.is_crashed(), state
    wait_for(lambda: not pid_alive(pid), 10, "the run process gone")
    assert stack.socket_path.exists()  # stale: nobody listens on it any more

    cold_id, cold_out = stack.run("report")
    assert stack.final_state(cold_id).is_completed()
    assert stack.report(cold_out)["ppid"] == stack.worker.pid  # exec'd by its launcher
    assert "starting a fresh interpreter" in stack.worker_log.read_text()

    stack.start_fork_server()  # a new fork server takes over the stale socket
    warm_id, warm_out = stack.run("report")
    assert stack.final_state(warm_id).is_completed()
    warm = stack.report(warm_out)
    assert warm["ppid"] == stack.fork_server.pid
    wait_for(lambda: not pid_alive(warm["pid"]), 30, "the run process exited")
