"""The background loop: sync every Job to Prefect, then reconcile JobLog with Prefect.

Runs every CONNECTHUB_SYNC_INTERVAL_SECONDS (default 15). Both halves are idempotent, so any
number of loops may run at once (e.g. one per machine) without doubling work, and a pass that
fails because Prefect is down is simply repeated on the next tick: this is how saves made
while Prefect was unreachable reach it.
"""

from __future__ import annotations

import logging
import threading

from deployments.client import PrefectUnavailableError
from deployments.reconcile import Reconciler
from deployments.sync import sync_all

logger = logging.getLogger("connecthub.loop")


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


def run_forever(interval_seconds: float, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    reconciler = Reconciler()
    while not stop.is_set():
        try:
            run_pass(reconciler)
        except Exception:  # the loop outlives any one bad pass
            logger.exception("sync/reconcile pass failed")
        stop.wait(interval_seconds)
