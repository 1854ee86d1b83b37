"""Retention of Prefect's side: ConnectHub's flow runs older than JOBLOG_RETENTION_DAYS.

Prefect keeps every flow run forever; this deletes, through the API, the runs of ConnectHub's
generic flow that ended before the horizon, `BATCH` per read, so a server of any size is
pruned in bounded requests. The API deletes the flow run row only: the logs it leaves are
removed by Prefect's own `db_vacuum` service when the server runs it with "orphans" in
PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED. ConnectHub's rows are pruned by
`connecthub.db.retention`.
"""

from __future__ import annotations

from datetime import datetime

from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterEndTime,
)
from prefect.client.schemas.sorting import FlowRunSort

from connecthub.jobs.vocabulary import FLOW_NAME
from deployments.client import prefect_client, read_or_none

BATCH = 200


def prune_flow_runs(
    horizon: datetime, *, dry_run: bool = False, max_batches: int | None = None
) -> int:
    """Delete (or count, with `dry_run`) ConnectHub's flow runs that ended before `horizon`."""
    flow_filter = FlowFilter(name=FlowFilterName(any_=[FLOW_NAME]))
    run_filter = FlowRunFilter(end_time=FlowRunFilterEndTime(before_=horizon))
    with prefect_client() as client:
        if dry_run:
            return client.count_flow_runs(flow_filter=flow_filter, flow_run_filter=run_filter)
        deleted = batches = 0
        while max_batches is None or batches < max_batches:
            runs = client.read_flow_runs(
                flow_filter=flow_filter, flow_run_filter=run_filter,
                sort=FlowRunSort.END_TIME_DESC, limit=BATCH,
            )
            if not runs:
                break
            for run in runs:
                read_or_none(lambda run=run: client.delete_flow_run(run.id))
            deleted += len(runs)
            batches += 1
    return deleted
