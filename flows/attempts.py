"""Which JobLog attempt a Prefect flow run is, and recording Prefect's outcome of it.

A flow run's attempt is its `run_count` (a Prefect-UI retry reruns the same flow run), its
trigger comes from its tags, and its `retry_of` from the JobLog store's `retry_link`. The flow
body, its crash and cancellation hooks and the reconciler all derive them here, so the three
agree on every attempt they write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connecthub.db import joblog
from connecthub.jobs.vocabulary import RunStatus, Trigger, trigger_of


@dataclass(frozen=True)
class RunAttempt:
    flow_run_id: str
    attempt: int
    job_id: str
    trigger: Trigger
    retry_of: int | None
    params: dict[str, Any] | None

    @classmethod
    def of(cls, flow_run: Any) -> RunAttempt:
        """The attempt `flow_run` (a Prefect FlowRun) is now."""
        flow_run_id = str(flow_run.id)
        attempt = max(flow_run.run_count, 1)
        parameters: dict[str, Any] = flow_run.parameters or {}
        retry_of = joblog.retry_link(flow_run_id, attempt, parameters.get("retry_of"))
        trigger = trigger_of(
            flow_run.tags or (), auto_scheduled=bool(flow_run.auto_scheduled), attempt=attempt,
            retry_of=retry_of,
        )
        params = parameters.get("params")
        return cls(
            flow_run_id, attempt, str(parameters.get("job_id", "")), trigger, retry_of,
            params if isinstance(params, dict) else None,
        )


def mirror_outcome(
    flow_run: Any, status: RunStatus, message: str | None, finished_at: datetime | None = None
) -> None:
    """Record Prefect's final `status` of `flow_run`'s current attempt, unless already final."""
    attempt = RunAttempt.of(flow_run)
    joblog.mirror_final(
        attempt.flow_run_id, attempt.attempt, status,
        job_id=attempt.job_id, trigger=attempt.trigger, retry_of=attempt.retry_of,
        snapshot_params=attempt.params, message=message, finished_at=finished_at,
    )
