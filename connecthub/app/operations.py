"""What the entry points do with jobs in more than one place: one code path for each.

`apply_job_file` is `connecthub jobs apply` and `connecthub up --with-example` alike: validate
every job of the file first, save them all in one transaction (all or none), then sync each to
Prefect, where a sync failure is a warning: the save stands and the sync loop catches up.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from connecthub.app import job_changes
from connecthub.db.audit import Actor
from connecthub.db.engine import session_scope
from connecthub.jobs.files import read_job_file


def apply_job_file(
    path: Path, actor: Actor, *, sync: bool = True, warn: Callable[[str], None] = print
) -> list[str]:
    """Save every job in `path` (or none if one is invalid), each with its audit entry; the
    ids saved."""
    specs = read_job_file(path)
    with session_scope() as session:
        for spec in specs:
            job_changes.save_in(session, spec, actor)
    job_ids = [spec.id for spec in specs]
    if sync:
        sync_jobs(job_ids, warn)
    return job_ids


def sync_jobs(job_ids: list[str], warn: Callable[[str], None] = print) -> None:
    from deployments.sync import sync_job  # imports Prefect: only when a sync is asked for

    for job_id in job_ids:
        outcome = sync_job(job_id)
        if outcome.error:
            warn(f"warning: {job_id} saved but not synced: {outcome.error}")
