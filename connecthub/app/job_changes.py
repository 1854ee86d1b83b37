"""Creating, replacing, deleting, enabling and disabling a job: the one code path that the admin
and the REST API share, with the same messages for the same refusals.

Each change is validated beforehand by `JobSpec` (the caller builds it), written in one
transaction through `crud`, then synced to Prefect; a sync failure is reported, never undoes the
save (the sync loop catches up). A refusal raises `JobChangeError` with a message for the
operator and the HTTP status it stands for; database errors are logged by kind only, since
their statement and parameters may hold a Fernet token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from connecthub.db import crud
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


def insert_job(spec: JobSpec) -> Job:
    with session_scope() as session:
        return crud.save_job(session, spec, must_be_new=True)


def update_job(spec: JobSpec) -> Job:
    with session_scope() as session:
        crud.get_job(session, spec.id)
        return crud.save_job(session, spec)


def save(spec: JobSpec, *, new: bool) -> Job:
    """Insert (`new`) or update the job `spec.id`."""
    try:
        return insert_job(spec) if new else update_job(spec)
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


def delete(job_id: str) -> str | None:
    """Delete the row; the deployment id it had (for `remove_deployment`)."""
    try:
        with session_scope() as session:
            deployment_id = crud.get_job(session, job_id).deployment_id
            crud.delete_job(session, job_id)
    except crud.JobNotFoundError:
        raise JobChangeError(f"Job '{job_id}' was already deleted.", 404) from None
    except SQLAlchemyError as error:
        _log_db_error("deleting", job_id, error)
        raise JobChangeError(f"The database could not delete job '{job_id}'.", 503) from None
    return deployment_id


def set_enabled(job_id: str, enabled: bool) -> bool:
    """Enable or disable the job; whether that changed it."""
    try:
        with session_scope() as session:
            job = crud.get_job(session, job_id)
            if job.enabled == enabled:
                return False
            job.enabled = enabled
            job.updated_at = utcnow()
            return True
    except crud.JobNotFoundError:
        raise JobChangeError(f"Job '{job_id}' no longer exists.", 404) from None
    except SQLAlchemyError as error:
        _log_db_error("enabling" if enabled else "disabling", job_id, error)
        raise JobChangeError(
            f"The database could not update job '{job_id}'; try again.", 503
        ) from None


def sync(job_id: str) -> Synced:
    from deployments.sync import sync_job  # imports Prefect: only when a change is synced

    return Synced(job_id, sync_job(job_id).error)


def remove_deployment(job_id: str, deployment_id: str | None) -> str | None:
    """Delete a deleted job's deployment; None, or why it is not deleted yet."""
    from deployments.sync import remove_job

    return remove_job(job_id, deployment_id)
