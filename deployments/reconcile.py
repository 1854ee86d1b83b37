"""JobLog agrees with Prefect: mirroring the runs the flow body could not record itself.

A run can end without its body writing JobLog: the process was killed (CRASHED), the run was
cancelled (CANCELLED), it died before the body started (an import or infrastructure error), or
its heartbeat stopped and the heartbeat automation crashed it. The reconciler reads Prefect's
own state of (1) every JobLog still PENDING or RUNNING and (2) every run of the ConnectHub flow
that ended since the last pass, and writes the final status of each attempt, idempotently on
(flow_run_id, attempt) and never over a final status the body wrote. A retry started in the
Prefect UI reruns the same flow run: its body records the new attempt, and when it dies first,
the reconciler does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort

from connecthub.db import joblog
from connecthub.jobs.vocabulary import FLOW_NAME, RunStatus
from deployments.client import prefect_client
from flows.attempts import mirror_outcome

logger = logging.getLogger("connecthub.reconcile")
PAGE_SIZE = 200
# Runs that end while a pass is in flight are read again by the next one.
OVERLAP = timedelta(minutes=2)

FINAL_STATUS = {
    StateType.COMPLETED: RunStatus.SUCCESS,
    StateType.FAILED: RunStatus.FAILED,
    StateType.CRASHED: RunStatus.CRASHED,
    StateType.CANCELLED: RunStatus.CANCELLED,
}


def _mirror(flow_run: FlowRun) -> bool:
    """Record the final state of `flow_run` unless JobLog already has it; True if written."""
    status = FINAL_STATUS.get(flow_run.state_type) if flow_run.state_type else None
    if status is None:
        return False
    flow_run_id = str(flow_run.id)
    attempt = max(flow_run.run_count, 1)
    existing = joblog.find_attempt(flow_run_id, attempt)
    if existing is not None and RunStatus(existing.status).is_final:
        return False
    message = flow_run.state.message if flow_run.state else None
    mirror_outcome(flow_run, status, message, flow_run.end_time)
    logger.info("JobLog of flow run %s attempt %s mirrored as %s", flow_run_id, attempt, status)
    return True


def _read_by_ids(client: SyncPrefectClient, flow_run_ids: list[str]) -> list[FlowRun]:
    runs: list[FlowRun] = []
    for start in range(0, len(flow_run_ids), PAGE_SIZE):
        batch = [UUID(item) for item in flow_run_ids[start : start + PAGE_SIZE]]
        runs.extend(
            client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=batch)), limit=PAGE_SIZE
            )
        )
    return runs


def reconcile_flow_runs(flow_run_ids: list[str]) -> int:
    """Mirror the final state of these flow runs; returns how many JobLog rows were written."""
    with prefect_client() as client:
        runs = _read_by_ids(client, flow_run_ids)
    return _mirror_all(runs)


def _mirror_all(runs: list[FlowRun]) -> int:
    """Mirror each run; one that cannot be written is logged and does not stop the others."""
    written = 0
    for run in {run.id: run for run in runs}.values():
        try:
            written += _mirror(run)
        except Exception:
            logger.exception("could not mirror flow run %s into JobLog", run.id)
    return written


@dataclass
class Reconciler:
    """Passes over Prefect's flow runs; `since` is the end time from which runs are read."""

    since: datetime | None = None
    lookback: timedelta = timedelta(hours=1)

    def run_once(self) -> int:
        started = datetime.now(UTC)
        since = self.since or started - self.lookback
        open_ids = joblog.open_flow_run_ids()
        with prefect_client() as client:
            runs = _read_by_ids(client, open_ids) if open_ids else []
            offset = 0
            while True:
                page = client.read_flow_runs(
                    flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
                    flow_run_filter=FlowRunFilter(end_time=FlowRunFilterEndTime(after_=since)),
                    sort=FlowRunSort.END_TIME_DESC,
                    limit=PAGE_SIZE,
                    offset=offset,
                )
                runs.extend(page)
                if len(page) < PAGE_SIZE:
                    break
                offset += PAGE_SIZE
        written = _mirror_all(runs)
        self.since = started - OVERLAP
        return written
