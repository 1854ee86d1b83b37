"""What the API answers with, derived from the one list of job fields (`JobSpec`).

`JobOut` is every exported job field (all but the secrets, which are write-only: `has_secrets`
says whether some are stored) with its sync state. `job_spec_schema` is JobSpec's JSON schema,
documented as the body of create, replace and patch.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from connecthub.db.models import Job, JobLog
from connecthub.jobs.files import export_job
from connecthub.jobs.spec import EXPORTED_FIELDS, JobSpec

_JobFields = create_model(  # type: ignore[call-overload]
    "JobFields",
    **{name: (JobSpec.model_fields[name].annotation, ...) for name in EXPORTED_FIELDS},
)


class JobOut(_JobFields):  # type: ignore[misc,valid-type]
    has_secrets: bool
    deployment_id: str | None
    synced_at: datetime | None
    sync_error: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            **export_job(job), has_secrets=job.secret_cfg is not None,
            deployment_id=job.deployment_id, synced_at=job.synced_at, sync_error=job.sync_error,
            created_at=job.created_at, updated_at=job.updated_at,
        )


class JobPage(BaseModel):
    items: list[JobOut]
    total: int
    limit: int
    offset: int


class Changed(BaseModel):
    job: JobOut
    sync_error: str | None = Field(
        description="Why Prefect is not updated yet (the save stands; the sync loop catches up)."
    )


class LogOut(BaseModel):
    id: int
    job_id: str
    status: str
    trigger: str
    attempt: int
    flow_run_id: str | None
    retry_of: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    error: str | None

    @classmethod
    def of(cls, log: JobLog) -> LogOut:
        return cls(**{name: getattr(log, name) for name in cls.model_fields})


class LogDetail(LogOut):
    snapshot_params: dict[str, Any] | None
    result: Any | None = None
    traceback: str | None

    @classmethod
    def of(cls, log: JobLog) -> LogDetail:
        return cls(**{name: getattr(log, name) for name in cls.model_fields})


class LogPage(BaseModel):
    items: list[LogOut]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next (older) page.")


class RunRequest(BaseModel):
    params: dict[str, Any] | None = Field(
        default=None, description="Used instead of the job's public_cfg, for this run only."
    )


class RetryRequest(BaseModel):
    use: Literal["snapshot", "current"] = "snapshot"


class Started(BaseModel):
    log_id: int
    status: str


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {key: _inline(value, defs) for key, value in schema.items() if key != "$defs"}
    if isinstance(schema, list):
        return [_inline(item, defs) for item in schema]
    return schema


def job_spec_schema(*, partial: bool = False) -> dict[str, Any]:
    """JobSpec's JSON schema with its definitions inlined (`partial`: no field required)."""
    schema = JobSpec.model_json_schema()
    inlined = _inline(schema, schema.get("$defs", {}))
    if partial:
        inlined.pop("required", None)
    return inlined


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` documenting a JSON request body with `schema`."""
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}
