"""Retention on Prefect's side, against a real Prefect server and worker: ConnectHub's flow runs
that ended before the horizon are deleted (counted with --dry-run), later ones stay."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from uuid import UUID

from deployments.client import prefect_client, read_or_none
from deployments.retention import prune_flow_runs
from deployments.runs import run_now, wait_for_final
from tests.support.jobs import save


def test_flow_runs_past_the_horizon_are_pruned_and_later_ones_stay(
    pg_env: None, worker: Path
) -> None:
    save("prune.runs")
    old = run_now("prune.runs")
    assert wait_for_final(old.id, timeout_seconds=90).status == "SUCCESS"
    with prefect_client() as client:
        ended = client.read_flow_run(UUID(old.flow_run_id)).end_time
    horizon = ended + timedelta(milliseconds=1)
    newer = run_now("prune.runs")
    assert wait_for_final(newer.id, timeout_seconds=90).status == "SUCCESS"

    counted = prune_flow_runs(horizon, dry_run=True)
    assert counted >= 1
    with prefect_client() as client:  # a dry run deletes nothing
        assert client.read_flow_run(UUID(old.flow_run_id)) is not None
    assert prune_flow_runs(horizon, max_batches=100) == counted
    with prefect_client() as client:
        assert read_or_none(lambda: client.read_flow_run(UUID(old.flow_run_id))) is None
        assert client.read_flow_run(UUID(newer.flow_run_id)).state.is_completed()
    assert prune_flow_runs(horizon, dry_run=True) == 0
