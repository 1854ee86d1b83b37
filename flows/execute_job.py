"""The generic flow `connecthub-execute-job`: runs one Job and mirrors the run into JobLog.

Parameters are never secret: `job_id`, an optional `params` override of the job's public_cfg and,
for a retry started from ConnectHub, `retry_of` (the JobLog it retries). The flow loads the Job,
decrypts its secrets in memory, loads and validates the plugin, and runs it while the secret
values are masked in every log record, traceback and printed line of the process. JobLog gets
one row per (flow run, attempt), written through `connecthub.db.joblog`: RUNNING with the exact
params the plugin receives, then SUCCESS with the result, or FAILED with the masked error and
traceback (the flow then fails, so Prefect applies the job's retries). A job deleted meanwhile,
or a disabled job's scheduled run, ends CANCELLED with the reason; runs that die under the body
are mirrored by the hooks below and by `deployments.reconcile`.

In the Prefect UI the run reads as what it did: it is named after its job, slot and trigger
(`vocabulary.flow_run_name`), its phases ("load job", "run plugin", "record") and the plugin's
own steps (`BaseJob.step`, run by `flows.steps`) are task runs in its graph, and it carries a
link artifact to its JobLog page in the admin and a markdown artifact of its result or error,
masked and cut at MAX_SUMMARY_CHARS.
"""

from __future__ import annotations

import json
import traceback
from typing import Any
from uuid import UUID

from prefect import flow, get_client, get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.client.schemas.objects import FlowRun, FlowRunPolicy
from prefect.context import FlowRunContext
from prefect.settings import get_current_settings
from prefect.states import Cancelled, State
from prefect.utilities.timeout import timeout

from connecthub.core.config import get_settings
from connecthub.core.logging import log_to_file, mask, secrets_masked
from connecthub.db import joblog
from connecthub.db.engine import session_scope
from connecthub.db.models import Job
from connecthub.jobs.base import JobContext
from connecthub.jobs.vocabulary import (
    FLOW_NAME,
    RunStatus,
    Trigger,
    admin_joblog_url,
    flow_run_name,
)
from connecthub.plugins.manager import load_job_class
from connecthub.security.fernet import DecryptionError, decrypt_json
from flows.attempts import RunAttempt, mirror_outcome
from flows.steps import prefect_step

MAX_RESULT_BYTES = 64 * 1024
# The result artifact is a glance at the outcome; JobLog keeps the whole result.
MAX_SUMMARY_CHARS = 2000


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


def _read_job(job_id: str) -> Job | None:
    def read() -> Job | None:
        with session_scope() as session:
            return session.get(Job, job_id)

    return joblog.with_db_retry(read, f"reading job {job_id}")


def _skip_reason(job: Job | None, job_id: str, trigger: Trigger) -> str | None:
    if job is None:
        return f"Job '{job_id}' no longer exists; nothing ran."
    if not job.enabled and trigger is Trigger.SCHEDULE:
        return f"Job '{job_id}' is disabled; the scheduled run was skipped."
    return None


def _update_flow_run(flow_run: FlowRun, job: Job, attempt: RunAttempt) -> None:
    """Give this flow run its job's retries (Prefect's server decides retries from its policy)
    and, on its first attempt, its readable name; one API call, and none when both are set."""
    changes: dict[str, Any] = {}
    policy = flow_run.empirical_policy
    delay = job.retry_delay_seconds if job.max_retries else 0
    if (policy.retries or 0) != job.max_retries or (policy.retry_delay or 0) != delay:
        changes["empirical_policy"] = FlowRunPolicy(
            retries=job.max_retries, retry_delay=job.retry_delay_seconds
        )
    slot = flow_run.expected_start_time or flow_run.created
    if attempt.attempt == 1 and slot is not None:
        name = flow_run_name(job.id, slot, attempt.trigger, attempt.retry_of)
        if flow_run.name != name:
            changes["name"] = name
    if changes:
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run_id=UUID(str(flow_run.id)), **changes)


def result_summary(log_id: int, status: RunStatus, body: Any) -> str:
    """The run's outcome as markdown for its artifact: masked, and cut when long."""
    text = mask(body if isinstance(body, str) else json.dumps(body, indent=2, default=str))
    if len(text) > MAX_SUMMARY_CHARS:
        text = f"{text[:MAX_SUMMARY_CHARS]}\n... (cut: JobLog #{log_id} has all of it)"
    return f"**{status.value}** (JobLog #{log_id})\n\n```\n{text}\n```"


def _finish(attempt: RunAttempt, status: RunStatus, **values: Any) -> int:
    return joblog.with_db_retry(
        lambda: joblog.record_final(
            attempt.flow_run_id, attempt.attempt, status, job_id=attempt.job_id, **values
        ),
        f"writing the final JobLog of flow run {attempt.flow_run_id}",
    )


def _decrypt_secrets(job: Job, attempt: RunAttempt, logger: Any) -> dict[str, Any]:
    if not job.secret_cfg:
        return {}
    try:
        return decrypt_json(job.secret_cfg, job_id=job.id)
    except DecryptionError as error:  # names the job and the key file, not the token
        message = f"{type(error).__name__}: {error}"
        logger.error("Job %s failed: %s", job.id, message)
        _finish(attempt, RunStatus.FAILED, error=message)
        raise JobRunError(message) from None


def _run_plugin(
    job: Job, params: dict[str, Any], secrets: dict[str, Any], attempt: RunAttempt, logger: Any
) -> Any:
    job_class = load_job_class(job.handler_path)
    typed_params = job_class.validate_params(params)
    typed_secrets = job_class.validate_secrets(secrets)
    plugin = job_class(
        JobContext(
            job_id=job.id, flow_run_id=attempt.flow_run_id, attempt=attempt.attempt,
            logger=logger, step_runner=prefect_step,
        )
    )
    with timeout(seconds=job.timeout_seconds, timeout_exc_type=JobTimeoutError):
        return plugin.run(typed_params, typed_secrets)


def _run_masked(
    job: Job, params: dict[str, Any], attempt: RunAttempt, logger: Any, log_id: int
) -> tuple[Any, str]:
    """The plugin's result and its summary (masked while the secrets are known); FAILED
    recorded, with its summary artifact, and JobRunError raised when it fails."""
    secrets = _decrypt_secrets(job, attempt, logger)
    try:
        with secrets_masked(secrets):
            try:
                result = _run_plugin(job, params, secrets, attempt, logger)
                return result, result_summary(log_id, RunStatus.SUCCESS, result)
            except Exception as error:
                message = mask(f"{type(error).__name__}: {error}")
                trace = mask(traceback.format_exc())
                logger.error("Job %s failed: %s\n%s", job.id, message, trace)
                _finish(attempt, RunStatus.FAILED, error=message, traceback=trace)
                create_markdown_artifact(
                    result_summary(log_id, RunStatus.FAILED, message), description="Error"
                )
                raise JobRunError(message) from None
    finally:
        secrets.clear()


# Nothing is persisted (JobLog keeps the result); naming Prefect's own local default storage
# spares every run the request that looks for a server-wide default first (GET /admin/storage).
@flow(
    name=FLOW_NAME, log_prints=False, persist_result=False,
    result_storage=get_current_settings().results.local_storage_path,
)
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
    logger = get_run_logger()

    with prefect_step("load job"):
        attempt = joblog.with_db_retry(
            lambda: RunAttempt.of(flow_run), f"reading the JobLog of flow run {flow_run.id}"
        )
        job = _read_job(job_id)
        snapshot = params if params is not None else (job.public_cfg if job else None)
        log_id = joblog.with_db_retry(
            lambda: joblog.record_running(
                attempt.flow_run_id, attempt.attempt, job_id=job_id, trigger=attempt.trigger,
                retry_of=attempt.retry_of, snapshot_params=snapshot,
            ),
            f"writing the JobLog of flow run {attempt.flow_run_id}",
        )
    create_link_artifact(
        admin_joblog_url(settings.admin_url, log_id), link_text=f"JobLog #{log_id}",
        description="This run in the ConnectHub admin",
    )

    skip_reason = _skip_reason(job, job_id, attempt.trigger)
    if skip_reason:
        logger.warning(skip_reason)
        _finish(attempt, RunStatus.CANCELLED, error=skip_reason)
        return Cancelled(message=skip_reason)
    assert job is not None
    _update_flow_run(flow_run, job, attempt)

    with prefect_step("run plugin"):
        result, summary = _run_masked(job, snapshot or {}, attempt, logger, log_id)
    with prefect_step("record"):
        _finish(attempt, RunStatus.SUCCESS, result=_json_result(result))
        create_markdown_artifact(summary, description="Result")
    logger.info("Job %s succeeded (JobLog #%s)", job.id, log_id)
    return {"job_log_id": log_id, "status": RunStatus.SUCCESS.value}


def _mirror_final_state(flow: Any, flow_run: FlowRun, state: State) -> None:
    """Hook: record a crash or cancellation the body could not record itself."""
    status = RunStatus.CRASHED if state.is_crashed() else RunStatus.CANCELLED
    joblog.with_db_retry(
        lambda: mirror_outcome(flow_run, status, state.message),
        f"writing the final JobLog of flow run {flow_run.id}",
    )


execute_job = execute_job.with_options(
    on_crashed=[_mirror_final_state], on_cancellation=[_mirror_final_state]
)
