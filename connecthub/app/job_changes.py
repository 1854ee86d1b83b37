"""Creating, replacing, deleting, enabling and disabling a job: the one code path that the admin
and the REST API share, with the same messages for the same refusals.

Each change is validated beforehand by `JobSpec` (the caller builds it), written in one
transaction through `crud` together with its audit entry (`db.audit`: who, from where, and the
field-level diff, a secret only as "changed"), then synced to Prefect; a sync failure is
reported, never undoes the save (the sync loop catches up). A refusal raises `JobChangeError`
with a message for the operator and the HTTP status it stands for; database errors are logged
by kind only, since their statement and parameters may hold a Fernet token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from connecthub.db import audit, crud
from connecthub.db.audit import Actor
from connecthub.db.engine import session_scope
from connecthub.db.models import Job, utcnow
from connecthub.jobs.spec import JobSpec

logger = logging.getLogger(__name__)

ID_CHANGE = "The id of a job cannot be changed: create a new job instead."


class JobChangeError(ValueError):
    """A change that was refused; nothing was written."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Synced:
    """The outcome of syncing a changed job to Prefect: None, or why it is not synced yet."""

    job_id: str
    error: str | None


def _log_db_error(action: str, job_id: str, error: SQLAlchemyError) -> None:
    reason = type(getattr(error, "orig", None) or error).__name__
    logger.error("database error while %s job %s: %s", action, job_id, reason)


def save_in(session: Session, spec: JobSpec, actor: Actor, *, new: bool | None = None) -> Job:
    """Save `spec` in `session` with its audit entry. `new`: True insert only, False update
    only, None either (a jobs file)."""
    existing = session.get(Job, spec.id)
    if new is False and existing is None:
        raise crud.JobNotFoundError(f"no job with id '{spec.id}'")
    before = audit.job_state(existing)
    job = crud.save_job(session, spec, must_be_new=bool(new))
    audit.record_job_change(session, actor, "job.update" if before else "job.create", job.id,
                            before, audit.job_state(job))
    return job


def insert_job(spec: JobSpec, actor: Actor) -> Job:
    with session_scope() as session:
        return save_in(session, spec, actor, new=True)


def update_job(spec: JobSpec, actor: Actor) -> Job:
    with session_scope() as session:
        return save_in(session, spec, actor, new=False)


def save(spec: JobSpec, actor: Actor, *, new: bool) -> Job:
    """Insert (`new`) or update the job `spec.id`."""
    try:
        return insert_job(spec, actor) if new else update_job(spec, actor)
    except crud.JobExistsError:
        raise JobChangeError(
            f"A job with id '{spec.id}' already exists: choose another id, or edit that job.", 409
        ) from None
    except crud.JobNotFoundError:
        raise JobChangeError(f"Job '{spec.id}' no longer exists: it was deleted.", 404) from None
    except IntegrityError as error:
        _log_db_error("saving", spec.id, error)
        raise JobChangeError(
            "The database refused this job because it conflicts with existing data "
            "(was it created meanwhile?). Nothing was saved.", 409
        ) from None
    except SQLAlchemyError as error:
        _log_db_error("saving", spec.id, error)
        raise JobChangeError(
            "The database could not save this job; nothing was saved. "
            "Try again, and check the admin's log if it persists.", 503
        ) from None


def delete_in(session: Session, job_id: str, actor: Actor) -> str | None:
    """Delete the row in `session` with its audit entry; the deployment id it had."""
    job = crud.get_job(session, job_id)
    deployment_id, before = job.deployment_id, audit.job_state(job)
    crud.delete_job(session, job_id)
    audit.record_job_change(session, actor, "job.delete", job_id, before, None)
    return deployment_id


def delete(job_id: str, actor: Actor) -> str | None:
    """Delete the row; the deployment id it had (for `remove_deployment`)."""
    try:
        with session_scope() as session:
            deployment_id = delete_in(session, job_id, actor)
    except crud.JobNotFoundError:
        raise JobChangeError(f"Job '{job_id}' was already deleted.", 404) from None
    except SQLAlchemyError as error:
        _log_db_error("deleting", job_id, error)
        raise JobChangeError(f"The database could not delete job '{job_id}'.", 503) from None
    return deployment_id


def set_enabled(job_id: str, enabled: bool, actor: Actor) -> bool:
    """Enable or disable the job; whether that changed it."""
    try:
        with session_scope() as session:
            job = crud.get_job(session, job_id)
            if job.enabled == enabled:
                return False
            job.enabled = enabled
            job.updated_at = utcnow()
            audit.record(session, actor, "job.enable" if enabled else "job.disable", job_id)
            return True
    except crud.JobNotFoundError:
        raise JobChangeError(f"Job '{job_id}' no longer exists.", 404) from None
    except SQLAlchemyError as error:
        _log_db_error("enabling" if enabled else "disabling", job_id, error)
        raise JobChangeError(
            f"The database could not update job '{job_id}'; try again.", 503
        ) from None


def record_run(actor: Actor, job_id: str, log_id: int, *, params: bool) -> None:
    """The audit entry of a run started now (`params`: with params of its own)."""
    with session_scope() as session:
        audit.record(session, actor, "job.run", job_id, {"log_id": log_id, "with_params": params})


def record_retry(actor: Actor, log_id: int, use: str, new_log_id: int) -> None:
    with session_scope() as session:
        audit.record(session, actor, "joblog.retry", f"#{log_id}",
                     {"use": use, "log_id": new_log_id})


def sync(job_id: str) -> Synced:
    from deployments.sync import sync_job  # imports Prefect: only when a change is synced

    return Synced(job_id, sync_job(job_id).error)


def remove_deployment(job_id: str, deployment_id: str | None) -> str | None:
    """Delete a deleted job's deployment; None, or why it is not deleted yet."""
    from deployments.sync import remove_job

    return remove_job(job_id, deployment_id)
