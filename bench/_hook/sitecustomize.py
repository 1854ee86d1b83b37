"""Imported at start-up by every Python process that has bench/_hook on PYTHONPATH.

In a flow-run process (one with PREFECT__FLOW_RUN_ID set) and only when BENCH_PROCESS_LOG_DIR
is set, it records when the interpreter started, every Prefect API request (method, path,
status, start offset and duration, through httpx's default transports) and, at exit or just
before the process execs another program, its peak resident memory (VmHWM) and CPU time, into
BENCH_PROCESS_LOG_DIR/<flow_run_id>-<pid>-<start ms>.json. ConnectHub's work pool starts each
flow run as `python -m prefect.engine`: one record. A pool without a command (the benchmarks'
`supervisor` variant) starts `python -m prefect.runner._workspace_supervisor` instead, which
prepares the workspace and then execs the engine in the same process: two records.
The benchmarks read these files to split a run's time and to report flow-process memory; the
recording costs microseconds per request and is the same for ConnectHub's and the bare flow.
"""

from __future__ import annotations

import contextlib
import os


def _install(log_dir: str, flow_run_id: str) -> None:
    import atexit
    import json
    import sys
    import time

    import httpx

    started = time.time()
    origin = time.perf_counter()
    requests: list[list[object]] = []
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

    def write(exec_into: object = None) -> None:
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
            "flow_run_id": flow_run_id, "pid": os.getpid(), "started": started,
            "exited": time.time(), "vmhwm_kb": peak_kb, "cpu_seconds": cpu.user + cpu.system,
            "argv": list(sys.argv), "exec_into": exec_into, "requests": requests,
        }
        path = os.path.join(log_dir, f"{flow_run_id}-{os.getpid()}-{int(started * 1000)}.json")
        with open(path + ".tmp", "w") as handle:
            json.dump(record, handle)
        os.replace(path + ".tmp", path)

    atexit.register(write)
    real_execve = os.execve

    def execve(path, args, env):  # type: ignore[no-untyped-def]
        with contextlib.suppress(Exception):  # never break the process being measured
            write(exec_into=list(args))
        return real_execve(path, args, env)

    os.execve = execve  # os.execvpe looks execve up here at call time


if os.environ.get("BENCH_PROCESS_LOG_DIR") and os.environ.get("PREFECT__FLOW_RUN_ID"):
    with contextlib.suppress(Exception):  # never break the process being measured
        _install(os.environ["BENCH_PROCESS_LOG_DIR"], os.environ["PREFECT__FLOW_RUN_ID"])
