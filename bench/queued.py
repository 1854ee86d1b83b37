"""How long a queued run waits once its job's concurrency slot frees.

    python -m bench.queued [--pairs 8] [--seconds 3] [--output docs/queued.md]

A job with concurrency limit 1 (the default, ENQUEUE) runs `bench.plugins:SleepJob` for
`--seconds`. `--pairs` times, one after the other: "Run now" twice, the second as soon as the
first is running; the figure is the second run's Running time minus the first run's Completed
time, from Prefect's own state timestamps. Measured twice in the same run, each against a fresh
Prefect server on PostgreSQL with one `connecthub worker` (product defaults): with ConnectHub's
server settings (deployments/server.py: a 2 s slot wait) and with Prefect's default 30 s slot
wait. Prints a Markdown table (also written to `--output`); exits 1 when ConnectHub's p95 is 5 s
or more.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from bench.plugins import SLEEP_HANDLER_PATH
from bench.stack import Stack
from bench.stats import Summary, table
from connecthub.db import crud
from connecthub.db.engine import session_scope
from connecthub.jobs.spec import JobSpec
from deployments.client import prefect_client
from deployments.runs import run_now, wait_for_final
from deployments.server import SERVER_SETTINGS

SLOT_WAIT = "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS"
PREFECT_DEFAULT_SLOT_WAIT = "30"
TARGET_P95_SECONDS = 5.0


def _state_time(flow_run_id: str, state_type: str) -> float:
    with prefect_client() as client:
        states = client.read_flow_run_states(UUID(flow_run_id))
    return min(state.timestamp.timestamp() for state in states if state.type.value == state_type)


def _wait_running(flow_run_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    with prefect_client() as client:
        while not client.read_flow_run(UUID(flow_run_id)).state.is_running():
            if time.monotonic() > deadline:
                raise TimeoutError(f"flow run {flow_run_id} did not start")
            time.sleep(0.1)


def measure(stack: Stack, name: str, slot_wait: str, pairs: int, seconds: float) -> Summary:
    """`pairs` waits of a queued second run, against a fresh server with `slot_wait`."""
    server = stack.prefect_server(name, **{SLOT_WAIT: slot_wait})
    stack.use_connecthub(name, server.url)
    with session_scope() as session:
        crud.save_job(session, JobSpec(
            id="bench.queued", cron_expr="0 3 * * *", handler_path=SLEEP_HANDLER_PATH,
            public_cfg={"seconds": seconds},
        ))
    stack.work_pool()
    worker = stack.worker(name)
    waits: list[float] = []
    for _ in range(pairs):
        first = run_now("bench.queued")
        _wait_running(first.flow_run_id)
        second = run_now("bench.queued")
        for log in (first, second):
            wait_for_final(log.id, timeout_seconds=180)
        waits.append(
            _state_time(second.flow_run_id, "RUNNING") - _state_time(first.flow_run_id, "COMPLETED")
        )
    stack.stop(worker)
    stack.stop(server)
    return Summary.of(waits)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.queued", description=__doc__)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-queued-"))
    with Stack(run_dir) as stack:
        ours = measure(stack, "connecthub", SERVER_SETTINGS[SLOT_WAIT], args.pairs, args.seconds)
        prefects = measure(stack, "prefect-default", PREFECT_DEFAULT_SLOT_WAIT, args.pairs,
                           args.seconds)
    ok = ours.p95 < TARGET_P95_SECONDS
    text = "\n".join([
        f"Queued run: `{shlex.join(['python', '-m', 'bench.queued', *argv])}`, "
        f"{started:%Y-%m-%d %H:%M} UTC. Second of two overlapping runs of one job (limit 1), "
        "from the first's Completed to the second's Running (Prefect's state times).",
        "",
        table(["slot wait", "wait after the slot frees", "p95", "target"], [
            [f"ConnectHub ({SERVER_SETTINGS[SLOT_WAIT]} s)", ours.fmt("s", 1),
             f"{ours.p95:.1f} s", f"p95 < {TARGET_P95_SECONDS:g} s: "
             + ("pass" if ok else "**FAIL**")],
            [f"Prefect's default ({PREFECT_DEFAULT_SLOT_WAIT} s)", prefects.fmt("s", 1),
             f"{prefects.p95:.1f} s", "—"],
        ]),
        "",
    ])
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
