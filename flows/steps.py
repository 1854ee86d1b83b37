"""Steps as Prefect task runs: the step runner the generic flow hands to every plugin.

`prefect_step(name)` runs the block of one step (`BaseJob.step`, and the flow's own phases) as a
task run of the current flow run: Pending, Running, then Completed, or Failed with the masked
error, with the block's duration, and its logs on the task run (it yields the task run's
logger). A step inside another is that step's child in the run graph. A BaseException that is
not an error (a cancellation, the process being stopped) crashes the task run, as Prefect's own
task engine does.

The block is a `with` body, not a function, so it is driven through Prefect's `SyncTaskRunEngine`
(`start()` and `setup_run_context()`, the parts of `run_task_sync` that do not call a function)
instead of `@task`. Its state changes go to Prefect as events, as every sync task run's do: a step
makes no HTTP call of its own (docs/benchmarks.md, "Steps"). No result is kept: a step's value
stays in the plugin.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import Task
from prefect.logging.loggers import PrefectLogAdapter
from prefect.states import Completed, Failed
from prefect.task_engine import SyncTaskRunEngine

from connecthub.core.logging import mask
from connecthub.jobs.base import step_name


def _step() -> None:
    """Never called: the task whose runs are the steps (its key groups them)."""


# Built once: a Task derives its key from its function's source, which costs more than a step.
_STEP_TASK = Task(_step, name="step")


def _task_named(name: str) -> Task:
    task = copy.copy(_STEP_TASK)
    task.name = name
    task.task_run_name = lambda: name  # the graph shows the step's own name, no counter suffix
    return task


@contextmanager
def prefect_step(name: str) -> Iterator[PrefectLogAdapter]:
    """Run the block as a task run named `name` of the current flow run."""
    engine = SyncTaskRunEngine(task=_task_named(step_name(name)))
    with engine.start(), engine.setup_run_context():
        try:
            yield engine.logger
        except Exception as error:
            message = mask(f"{type(error).__name__}: {error}")
            engine.logger.error("Step failed: %s", message)
            engine.set_state(Failed(message=message))
            raise
        engine.set_state(Completed())
