"""The generic flow `connecthub-execute-job`: runs one Job and mirrors the run into JobLog.

Parameters are never secret: `job_id`, an optional `params` override of the job's public_cfg and,
for a retry started from ConnectHub, `retry_of` (the JobLog it retries). The flow loads the Job,
decrypts its secrets in memory, loads and validates the plugin, and runs it while the secret
values are masked in every log record, traceback and printed line of the process. JobLog gets
one row per (flow run, attempt): RUNNING with the exact params the plugin receives, then SUCCESS
with the result, or FAILED with the masked error and traceback (the flow then fails, so Prefect
applies the job's retries). A job deleted meanwhile, or a disabled job's scheduled run, ends
CANCELLED with the reason; runs that die under the body are mirrored by the hooks below and by
`deployments.reconcile`. The flow reads its Job and writes JobLog through `connecthub.db.runlog`
(the database driver alone), never through SQLAlchemy: this module runs in a new process per run.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext
from prefect.states import Cancelled, State
from prefect.utilities.timeout import timeout

from connecthub.core.config import get_settings
from connecthub.core.logging import log_to_file, mask, secrets_masked
from connecthub.db.runlog import (
    DatabaseUnavailableError,
    JobRow,
    RunLog,
    RunStatus,
    Trigger,
    duration_ms,
    utcnow,
)
from connecthub.jobs.base import JobContext
from connecthub.plugins.manager import load_job_class
from connecthub.security.fernet import DecryptionError, decrypt_json
from deployments.client import FLOW_NAME, set_retry_policy

MAX_RESULT_BYTES = 64 * 1024
TRIGGER_TAG_PREFIX = "connecthub.trigger:"
# How long the flow keeps retrying a JobLog write while the database is unreachable.
DB_RETRY_SECONDS = 300.0
T = TypeVar("T")
_logger = logging.getLogger("connecthub.flow")


class JobRunError(RuntimeError):
    """A job failed; the message is the plugin's error with the secrets masked."""


class JobTimeoutError(TimeoutError):
    pass


def _json_result(result: Any) -> Any:
    """`result` as stored in JobLog: JSON-safe, and cut with a marker when too large."""
    text = json.dumps(result, default=str)
    if len(text.encode()) <= MAX_RESULT_BYTES:
        return json.loads(text)
    return {
        "truncated": True,
        "size_bytes": len(text.encode()),
        "preview": text[: MAX_RESULT_BYTES // 2],
    }


def trigger_of(flow_run: Any, attempt: int, retry_of: int | None) -> Trigger:
    """What started this attempt of `flow_run` (a Prefect FlowRun)."""
    if attempt > 1:
        return Trigger.PREFECT_RETRY
    for tag in flow_run.tags or ():
        if tag.startswith(TRIGGER_TAG_PREFIX):
            return Trigger(tag.removeprefix(TRIGGER_TAG_PREFIX))
    if retry_of is not None:
        return Trigger.RETRY
    return Trigger.SCHEDULE if flow_run.auto_scheduled else Trigger.MANUAL


def _with_db_retry(write: Callable[[], T], what: str) -> T:
    """`write()`, retried with backoff while the database cannot be reached.

    A restart or fail-over of the database must neither lose a run's outcome nor turn it into a
    failure; JobLog writes are upserts on (flow_run_id, attempt), so repeating one is safe.
    """
    deadline = time.monotonic() + DB_RETRY_SECONDS
    delay = 0.5
    while True:
        try:
            return write()
        except DatabaseUnavailableError as error:
            if time.monotonic() + delay > deadline:
                raise
            _logger.warning(
                "database unreachable while %s (%s); retrying in %.1f s",
                what, error, delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


_run_log: RunLog | None = None


def run_log() -> RunLog:
    """This process's connection to ConnectHub's database."""
    global _run_log
    if _run_log is None:
        _run_log = RunLog(get_settings().database_url)
    return _run_log


def _previous_attempt_id(flow_run_id: str, attempt: int) -> int | None:
    previous = _with_db_retry(
        lambda: run_log().find_attempt(flow_run_id, attempt - 1),
        f"reading the JobLog of flow run {flow_run_id}",
    )
    return previous.id if previous else None


def _start(
    flow_run_id: str, attempt: int, *, create: dict[str, Any], snapshot: dict[str, Any] | None
) -> int:
    def write() -> int:
        return run_log().record_attempt(
            flow_run_id, attempt, create=create,
            update_values={
                "status": RunStatus.RUNNING.value,
                "started_at": utcnow(),
                "snapshot_params": snapshot,
            },
        ).id

    return _with_db_retry(write, f"writing the JobLog of flow run {flow_run_id}")


def _finish(flow_run_id: str, attempt: int, status: RunStatus, **values: Any) -> int:
    finished = utcnow()
    job_id = values.pop("job_id", "")

    def write() -> int:
        row = run_log().find_attempt(flow_run_id, attempt)
        return run_log().record_attempt(
            flow_run_id, attempt, create={"job_id": job_id},
            update_values={
                "status": status.value,
                "finished_at": finished,
                "duration_ms": duration_ms(row.started_at if row else None, finished),
                **values,
            },
        ).id

    return _with_db_retry(write, f"writing the final JobLog of flow run {flow_run_id}")


@flow(name=FLOW_NAME, log_prints=False, persist_result=False)
def execute_job(
    job_id: str, params: dict[str, Any] | None = None, retry_of: int | None = None
) -> dict[str, Any] | State:
    """Run the ConnectHub job `job_id` (with `params` instead of its public_cfg, if given)."""
    settings = get_settings()
    if settings.log_dir is not None:
        log_to_file(settings.log_dir)
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    flow_run = context.flow_run
    flow_run_id = str(flow_run.id)
    attempt = max(flow_run.run_count, 1)
    trigger = trigger_of(flow_run, attempt, retry_of)
    if trigger is Trigger.PREFECT_RETRY:
        retry_of = _previous_attempt_id(flow_run_id, attempt) or retry_of
    logger = get_run_logger()

    job = _with_db_retry(lambda: run_log().read_job(job_id), f"reading job {job_id}")
    snapshot = params if params is not None else (job.public_cfg if job else None)
    log_id = _start(
        flow_run_id, attempt,
        create={"job_id": job_id, "trigger": trigger.value, "retry_of": retry_of},
        snapshot=snapshot,
    )

    skip_reason = None
    if job is None:
        skip_reason = f"Job '{job_id}' no longer exists; nothing ran."
    elif not job.enabled and trigger is Trigger.SCHEDULE:
        skip_reason = f"Job '{job_id}' is disabled; the scheduled run was skipped."
    if skip_reason:
        logger.warning(skip_reason)
        _finish(flow_run_id, attempt, RunStatus.CANCELLED, job_id=job_id, error=skip_reason)
        return Cancelled(message=skip_reason)

    assert job is not None
    policy = flow_run.empirical_policy
    if (policy.retries or 0) != job.max_retries or (policy.retry_delay or 0) != (
        job.retry_delay_seconds if job.max_retries else 0
    ):
        set_retry_policy(flow_run_id, job.max_retries, job.retry_delay_seconds)

    secrets: dict[str, Any] = {}
    try:
        if job.secret_cfg:
            try:
                secrets = decrypt_json(job.secret_cfg, job_id=job.id)
            except DecryptionError as error:  # names the job and the key file, not the token
                message = f"{type(error).__name__}: {error}"
                logger.error("Job %s failed: %s", job.id, message)
                _finish(flow_run_id, attempt, RunStatus.FAILED, job_id=job.id, error=message)
                raise JobRunError(message) from None
        with secrets_masked(secrets):
            try:
                result = _run_plugin(job, snapshot or {}, secrets, flow_run_id, attempt, logger)
            except Exception as error:
                message = mask(f"{type(error).__name__}: {error}")
                trace = mask(traceback.format_exc())
                logger.error("Job %s failed: %s\n%s", job.id, message, trace)
                _finish(
                    flow_run_id, attempt, RunStatus.FAILED,
                    job_id=job.id, error=message, traceback=trace,
                )
                raise JobRunError(message) from None
    finally:
        secrets.clear()

    _finish(flow_run_id, attempt, RunStatus.SUCCESS, job_id=job.id, result=result)
    logger.info("Job %s succeeded (JobLog #%s)", job.id, log_id)
    return {"job_log_id": log_id, "status": RunStatus.SUCCESS.value}


def _run_plugin(
    job: JobRow,
    params: dict[str, Any],
    secrets: dict[str, Any],
    flow_run_id: str,
    attempt: int,
    logger: Any,
) -> Any:
    job_class = load_job_class(job.handler_path)
    typed_params = job_class.validate_params(params)
    typed_secrets = job_class.validate_secrets(secrets)
    plugin = job_class(
        JobContext(job_id=job.id, flow_run_id=flow_run_id, attempt=attempt, logger=logger)
    )
    with timeout(seconds=job.timeout_seconds, timeout_exc_type=JobTimeoutError):
        result = plugin.run(typed_params, typed_secrets)
    return _json_result(result)


def _mirror_final_state(flow: Any, flow_run: Any, state: State) -> None:
    """Hook: record a crash or cancellation the body could not record itself."""
    status = RunStatus.CRASHED if state.is_crashed() else RunStatus.CANCELLED
    run_log().record_attempt(
        str(flow_run.id),
        max(flow_run.run_count, 1),
        create={"job_id": flow_run.parameters.get("job_id", "")},
        update_values={
            "status": status.value,
            "finished_at": utcnow(),
            "error": state.message or status.value.title(),
        },
        overwrite_final=False,
    )


execute_job = execute_job.with_options(
    on_crashed=[_mirror_final_state], on_cancellation=[_mirror_final_state]
)
