"""What a step costs: a job with 3 steps against the same job with none, in real flow runs.

`python -m bench.steps [--runs N]` starts a Prefect server on PostgreSQL (as the other engine
benchmarks do) and runs against it, in this process, N flow runs of each kind, alternated: a
flow that runs a plugin through the generic flow's step runner (`flows.steps.prefect_step`,
exactly what a run hands to `BaseJob.step`) with 3 empty steps, and the same plugin with none.
Per run it records the plugin's wall time, the Prefect API calls made meanwhile
(`bench/apicalls.py`: every HTTP request of every Prefect client in the process) and the
task-run state events the steps emit (events go over Prefect's websocket, not HTTP). The
result, per step: the median of (3-step time - 0-step time) / 3, API calls per step and events
per step. The generic flow's own three phases ("load job", "run plugin", "record") are steps
too, so a run pays the same per-step cost for each of them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import prefect.task_engine
from prefect import flow, get_run_logger
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, temporary_settings

from bench.apicalls import count_api_calls
from bench.stack import Stack
from bench.stats import Summary, fmt_number
from connecthub.jobs.base import BaseJob, JobContext
from flows.steps import prefect_step

STEPS = ("fetch", "transform", "push")


class StagedJob(BaseJob):
    """Does nothing, in `params["steps"]` steps."""

    def run(self, params: dict[str, Any], secrets: dict[str, Any]) -> None:
        for name in STEPS[: params["steps"]]:
            with self.step(name):
                pass


@contextmanager
def counted_events() -> Iterator[list[object]]:
    """Every task-run state event emitted meanwhile."""
    emitted: list[object] = []
    original = prefect.task_engine.emit_task_run_state_change_event

    def emit(*args: Any, **kwargs: Any) -> Any:
        emitted.append(kwargs.get("validated_state"))
        return original(*args, **kwargs)

    prefect.task_engine.emit_task_run_state_change_event = emit
    try:
        yield emitted
    finally:
        prefect.task_engine.emit_task_run_state_change_event = original


@flow(name="bench-steps", persist_result=False)
def staged(steps: int) -> dict[str, float]:
    job = StagedJob(JobContext(job_id="bench.steps", logger=get_run_logger(),
                               step_runner=prefect_step))
    with count_api_calls() as calls, counted_events() as events:
        started = time.perf_counter()
        job.run({"steps": steps}, {})
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "api_calls": calls.total, "events": len(events)}


def measure(runs: int) -> dict[str, Summary]:
    samples: dict[int, list[dict[str, float]]] = {0: [], 3: []}
    for steps in (3, 0):  # warm-up: first imports, first connections
        staged(steps)
    for index in range(runs):
        for steps in ((0, 3) if index % 2 else (3, 0)):
            samples[steps].append(staged(steps))
    return {
        "ms per step": Summary.of(
            (three["seconds"] - none["seconds"]) * 1000 / len(STEPS)
            for three, none in zip(samples[3], samples[0], strict=True)
        ),
        "run with 0 steps, ms": Summary.of(s["seconds"] * 1000 for s in samples[0]),
        "run with 3 steps, ms": Summary.of(s["seconds"] * 1000 for s in samples[3]),
        "API calls per step": Summary.of(
            (three["api_calls"] - none["api_calls"]) / len(STEPS)
            for three, none in zip(samples[3], samples[0], strict=True)
        ),
        "events per step": Summary.of(
            (three["events"] - none["events"]) / len(STEPS)
            for three, none in zip(samples[3], samples[0], strict=True)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.steps", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=20, help="flow runs of each kind")
    args = parser.parse_args()
    with Stack(Path(tempfile.mkdtemp(prefix="bench-steps-"))) as stack:
        server = stack.prefect_server("steps")
        # Prefect read its settings when it was imported: point this process's clients at the
        # server explicitly, or the flows would run on an ephemeral in-process one.
        with temporary_settings(updates={PREFECT_API_URL: server.url}):
            figures = measure(args.runs)
            APILogWorker.drain_all()  # the runs' last log lines, before the server stops
    print(f"{args.runs} flow runs of each kind, alternated, after one warm-up of each:")
    for label, summary in figures.items():
        print(f"- {label}: median {fmt_number(summary.median, 2)} "
              f"(min {fmt_number(summary.min, 2)}, max {fmt_number(summary.max, 2)})")


if __name__ == "__main__":
    main()
