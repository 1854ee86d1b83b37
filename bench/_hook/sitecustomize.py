"""Imported at start-up by every Python process that has bench/_hook on PYTHONPATH.

Only when BENCH_PROCESS_LOG_DIR is set, it records the processes of flow runs: when each
started, every Prefect API request (method, path, status, start offset and duration, through
httpx's default transports), when its main thread was done (before the atexit handlers run)
and, at exit or just before it execs another program, its peak resident memory (VmHWM) and CPU
time, into BENCH_PROCESS_LOG_DIR/<flow_run_id>-<pid>-<start
ms>.json, with its `role`:

- `process`: an interpreter started for a flow run (one with PREFECT__FLOW_RUN_ID): `python -m
  prefect.engine`, or Prefect's workspace supervisor (a pool without a command, as Prefect's
  default template and the bare flow's pool have), which execs the engine in the same process:
  two records of one pid, the later one holding the total CPU time.
- `launcher`: ConnectHub's pool command, `python -m deployments.launcher`. It imports the
  standard library only, so it is not given the httpx recording (importing httpx would cost it
  more than it spends); it is recorded when it exits (it leaves through `os._exit`) or execs
  `python -m prefect.engine` (warm start off, or no fork server), which is then recorded too.
- `forked`: a run process forked from ConnectHub's fork server. The fork server itself is not a
  flow run's process; the hook gives it an at-fork handler that installs the recording in each
  child, from the moment of the fork, and writes the record under the flow run id the child's
  environment holds by then (the launcher's).

The benchmarks read these files to split a run's time and to report flow-process memory; the
recording costs microseconds per request and is the same for ConnectHub's and the bare flow.
"""

from __future__ import annotations

import contextlib
import os
import sys


def _record(role: str, http: bool) -> None:
    """Record this process from now on, as `role`; with `http`, its Prefect API requests."""
    import atexit
    import json
    import time

    started = time.time()
    requests: list[list[object]] = []
    main_done: list[float] = []
    if http:
        _record_requests(requests, time.perf_counter())
        import threading

        # The interpreter calls threading._shutdown when the main thread is done, before the
        # atexit handlers (Prefect's flush of events and logs, and this record's own write).
        real_shutdown = threading._shutdown

        def shutdown() -> None:
            main_done.append(time.time())
            real_shutdown()

        threading._shutdown = shutdown

    def write(exec_into: object = None) -> None:
        log_dir = os.environ.get("BENCH_PROCESS_LOG_DIR")
        flow_run_id = os.environ.get("PREFECT__FLOW_RUN_ID")
        if not log_dir or not flow_run_id:
            return
        peak_kb = None
        try:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak_kb = int(line.split()[1])
        except OSError:
            pass
        cpu = os.times()
        record = {
            "flow_run_id": flow_run_id, "pid": os.getpid(), "role": role, "started": started,
            "exited": time.time(), "main_done": main_done[0] if main_done else None,
            "vmhwm_kb": peak_kb, "cpu_seconds": cpu.user + cpu.system,
            "argv": list(sys.argv), "exec_into": exec_into, "requests": requests,
        }
        path = os.path.join(log_dir, f"{flow_run_id}-{os.getpid()}-{int(started * 1000)}.json")
        with open(path + ".tmp", "w") as handle:
            json.dump(record, handle)
        os.replace(path + ".tmp", path)

    atexit.register(write)

    def before_exec(real):  # type: ignore[no-untyped-def]
        def exec_(path, args, *env):  # type: ignore[no-untyped-def]
            with contextlib.suppress(Exception):  # never break the process being measured
                write(exec_into=list(args))
            return real(path, args, *env)

        return exec_

    # os.execvpe and os.execlp look these up at call time; the launcher calls os.execv.
    os.execve = before_exec(os.execve)
    os.execv = before_exec(os.execv)
    if role == "launcher":
        real_exit = os._exit

        def exit_(code: int) -> None:
            with contextlib.suppress(Exception):
                write()
            real_exit(code)

        os._exit = exit_


def _record_requests(requests: list[list[object]], origin: float) -> None:
    import time

    import httpx

    sync_handle = httpx.HTTPTransport.handle_request
    async_handle = httpx.AsyncHTTPTransport.handle_async_request

    def path_of(request: httpx.Request) -> str:
        path = request.url.path
        return path[path.find("/api") + 4 :] if "/api" in path else path

    def handle_request(self, request):  # type: ignore[no-untyped-def]
        begin = time.perf_counter()
        response = sync_handle(self, request)
        requests.append([request.method, path_of(request), response.status_code,
                         round(begin - origin, 4), round(time.perf_counter() - begin, 4)])
        return response

    async def handle_async_request(self, request):  # type: ignore[no-untyped-def]
        begin = time.perf_counter()
        response = await async_handle(self, request)
        requests.append([request.method, path_of(request), response.status_code,
                         round(begin - origin, 4), round(time.perf_counter() - begin, 4)])
        return response

    httpx.HTTPTransport.handle_request = handle_request  # type: ignore[method-assign]
    httpx.AsyncHTTPTransport.handle_async_request = handle_async_request  # type: ignore[method-assign]


def _on_fork() -> None:
    with contextlib.suppress(Exception):  # never break the process being measured
        _record("forked", http=True)


def _install() -> None:
    command = getattr(sys, "orig_argv", [])
    if "deployments.forkserver" in command:
        os.register_at_fork(after_in_child=_on_fork)
    elif "deployments.launcher" in command:
        _record("launcher", http=False)
    elif os.environ.get("PREFECT__FLOW_RUN_ID"):
        _record("process", http=True)


if os.environ.get("BENCH_PROCESS_LOG_DIR"):
    with contextlib.suppress(Exception):  # never break the process being measured
        _install()
