"""The background loop: sync every Job to Prefect, then reconcile JobLog with Prefect.

Runs every CONNECTHUB_SYNC_INTERVAL_SECONDS (default 15). Both halves are idempotent, so any
number of loops may run at once (e.g. one per machine) without doubling work, and a pass that
fails because Prefect is down is simply repeated on the next tick: this is how saves made
while Prefect was unreachable reach it. Each pass then alerts (`deployments.alerting`), prunes
at most `PRUNE_BATCHES_PER_PASS` batches of expired history on both sides, and records itself
in `loop_state` (when, and its error) for the dashboard and `connecthub status`.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from connecthub.core.logging import mask
from connecthub.db import loop_state
from connecthub.db.engine import session_scope
from connecthub.db.models import utcnow
from connecthub.db.retention import prune
from deployments.alerting import run_alerting
from deployments.client import PrefectUnavailableError
from deployments.reconcile import Reconciler
from deployments.retention import prune_flow_runs
from deployments.sync import sync_all

logger = logging.getLogger("connecthub.loop")
PRUNE_BATCHES_PER_PASS = 10


def run_pass(reconciler: Reconciler) -> bool:
    """One sync and one reconcile; False when Prefect could not be reached."""
    try:
        report = sync_all()
        if report.writes or report.errors:
            logger.info(
                "sync: %d created, %d updated, %d deleted, %d unchanged, %d errors",
                len(report.created), len(report.updated), len(report.deleted),
                report.unchanged, len(report.errors),
            )
        written = reconciler.run_once()
        if written:
            logger.info("reconcile: %d JobLog attempts mirrored from Prefect", written)
    except PrefectUnavailableError as error:
        logger.warning("%s; retrying in the next pass", error)
        return False
    return True


def upkeep() -> None:
    """Alert, then prune a bounded share of the expired history."""
    report = run_alerting()
    if report.enqueued or report.sent or report.failed:
        logger.info(
            "alerts: %d enqueued, %d sent, %d failed", report.enqueued, report.sent,
            report.failed,
        )
    pruned = prune(max_batches=PRUNE_BATCHES_PER_PASS)
    pruned.flow_runs = prune_flow_runs(pruned.horizon, max_batches=PRUNE_BATCHES_PER_PASS)
    if pruned.joblog or pruned.deliveries or pruned.flow_runs:
        logger.info(
            "retention: %d JobLog rows, %d deliveries, %d flow runs pruned", pruned.joblog,
            pruned.deliveries, pruned.flow_runs,
        )


def _record(started_at: datetime, error: str | None) -> None:
    with session_scope() as session:
        loop_state.record_pass(session, started_at, utcnow(), error)


def run_forever(interval_seconds: float, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    reconciler = Reconciler()
    while not stop.is_set():
        started_at, error = utcnow(), None
        try:
            if not run_pass(reconciler):
                error = "Prefect was not reachable"
            upkeep()
        except PrefectUnavailableError as unavailable:
            error = str(unavailable)
        except Exception as failure:  # the loop outlives any one bad pass
            logger.exception("sync/reconcile pass failed")
            error = mask(f"{type(failure).__name__}: {failure}").splitlines()[0][:500]
        try:
            _record(started_at, error)
        except Exception:
            logger.exception("could not record the pass in loop_state")
        stop.wait(interval_seconds)
