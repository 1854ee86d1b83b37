"""`JobSpec`: what a job definition must satisfy before it is saved, wherever it comes from.

The admin form, `connecthub jobs apply` and the CLI all validate through this model, so a job is
checked the same way everywhere: id pattern, a cron expression that Prefect will really fire
(five fields, or an @alias, with a next fire time), an IANA timezone, a handler path that loads a
BaseJob, JSON objects for the configs (checked against the plugin's declared Params and Secrets),
bounded sizes, and no unknown fields. Errors name the field; they never repeat a secret value.

`JobSpec` is also the one list of a job's fields and their defaults (`JOB_FIELDS`): the row
(`crud.apply_spec`), the jobs files and their export, and the admin form all derive from it, so a
new field is one edit here, its column in `db.models` and a migration.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterBadDateError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from connecthub.jobs.base import JobConfigError
from connecthub.jobs.vocabulary import CHANNEL_NAME_PATTERN, JOB_ID_PATTERN, CollisionStrategy
from connecthub.plugins.manager import PluginError, load_job_class

CRON_ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
MAX_PUBLIC_CFG_BYTES = 64 * 1024
MAX_SECRET_CFG_BYTES = 16 * 1024


def validate_cron(expr: str) -> str:
    """`expr` normalised, or ValueError saying why Prefect could not schedule it."""
    text = " ".join((expr or "").split())
    if not text:
        raise ValueError("a cron expression is required, e.g. '*/5 * * * *'")
    if text.startswith("@"):
        if text.lower() not in CRON_ALIASES:
            raise ValueError(f"unknown cron alias; use one of {', '.join(sorted(CRON_ALIASES))}")
        text = text.lower()
    elif len(text.split()) != 5:
        raise ValueError(
            "a cron expression has exactly 5 fields: minute hour day-of-month month day-of-week"
        )
    if not croniter.is_valid(text):
        raise ValueError(f"'{text}' is not a valid cron expression")
    try:
        next_fire_time(text)
    except (CroniterBadDateError, ValueError, KeyError):
        raise ValueError(f"'{text}' never fires (no such date)") from None
    return text


def next_fire_time(expr: str, timezone: str = "UTC", after: datetime | None = None) -> datetime:
    start = (after or datetime.now(UTC)).astimezone(ZoneInfo(timezone))
    return croniter(expr, start).get_next(datetime)


def validate_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory, a long name
        raise ValueError(f"'{name}' is not an IANA timezone, e.g. UTC or Europe/Berlin") from None
    return name


def _json_size(obj: Any) -> int:
    try:
        return len(json.dumps(obj, separators=(",", ":"), allow_nan=False).encode())
    except ValueError:
        raise ValueError("NaN and Infinity are not JSON: use null or a string") from None


class JobSpec(BaseModel):
    """A job definition as typed by an operator (the secrets in plaintext, not yet encrypted)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    # Each description says what the field means; the admin form shows it as the field's help.
    id: str = Field(
        min_length=1, max_length=200,
        description="Unique, fixed once created: letters, digits, '.', '-' and '_'.",
    )
    name: str | None = Field(
        default=None, max_length=200, description="Shown in lists; defaults to the id."
    )
    description: str | None = Field(default=None, max_length=4000)
    handler_path: str = Field(
        description="module:Class of a BaseJob: an installed plugin's, or a path of your own."
    )
    cron_expr: str = Field(
        description="5 fields: minute hour day-of-month month day-of-week, or @hourly, @daily..."
    )
    timezone: str = Field(
        default="UTC", description="IANA name the cron is read in, e.g. UTC or Europe/Berlin."
    )
    enabled: bool = Field(
        default=True, description="A disabled job keeps its deployment with the schedule paused."
    )
    public_cfg: dict[str, Any] = Field(
        default_factory=dict,
        description="JSON object passed to the job as params; stored in plaintext.",
    )
    # None keeps the stored secrets; {} clears them.
    secret_cfg: dict[str, Any] | None = Field(
        default=None, description="JSON object, encrypted on save and never shown again."
    )
    timeout_seconds: int | None = Field(
        default=None, gt=0, le=7 * 24 * 3600, description="Unset: no timeout."
    )
    max_retries: int = Field(default=0, ge=0, le=100)
    retry_delay_seconds: int = Field(default=60, ge=0, le=24 * 3600)
    concurrency_limit: int | None = Field(
        default=1, ge=1, le=1000,
        description="How many runs of this job may overlap; unset: no limit.",
    )
    collision_strategy: CollisionStrategy = Field(
        default=CollisionStrategy.ENQUEUE,
        description="What a new run does while an earlier one is still going.",
    )
    tags: list[str] = Field(default_factory=list, max_length=20)
    alerts: list[str] = Field(
        default_factory=list, max_length=20,
        description="The alert channels of this job (`connecthub alerts list`); none named: "
        "the default channels.",
    )
    alert_after_failures: int = Field(
        default=1, ge=1, le=1000,
        description="One alert per failure streak, once it is this long.",
    )
    alert_every_failure: bool = Field(
        default=False,
        description="Alert every failure once a streak is alert_after_failures long, not just "
        "the first.",
    )
    max_log_rows: int | None = Field(
        default=None, ge=1, le=10_000_000,
        description="Keep at most this many JobLog rows of this job, the newest; unset: "
        "JOBLOG_MAX_ROWS_PER_JOB.",
    )

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not JOB_ID_PATTERN.match(value):
            raise ValueError("use only letters, digits, '.', '-' and '_', e.g. example.hello")
        if not value.strip("."):
            raise ValueError("an id needs a letter, digit, '-' or '_' besides dots")
        return value

    @field_validator("cron_expr")
    @classmethod
    def _cron(cls, value: str) -> str:
        return validate_cron(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return validate_timezone(value)

    @field_validator("handler_path")
    @classmethod
    def _handler(cls, value: str) -> str:
        try:
            load_job_class(value)
        except PluginError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("name", "description")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain a NUL character (\\x00)")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not tag or len(tag) > 60:
                raise ValueError("each tag is 1 to 60 characters")
        return value

    @field_validator("alerts", mode="before")
    @classmethod
    def _alerts(cls, value: Any) -> Any:
        # A form or a jobs file that leaves the list out names no channel.
        return [] if value is None else value

    @field_validator("alerts")
    @classmethod
    def _alert_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not CHANNEL_NAME_PATTERN.match(name):
                raise ValueError(
                    "each alert channel name is 1 to 100 letters, digits, '.', '-' or '_'"
                )
        return value

    @field_validator("public_cfg")
    @classmethod
    def _public_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        if _json_size(value) > MAX_PUBLIC_CFG_BYTES:
            raise ValueError(f"public_cfg is larger than {MAX_PUBLIC_CFG_BYTES // 1024} KiB")
        return value

    @field_validator("secret_cfg")
    @classmethod
    def _secret_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and _json_size(value) > MAX_SECRET_CFG_BYTES:
            raise ValueError(f"secret_cfg is larger than {MAX_SECRET_CFG_BYTES // 1024} KiB")
        return value

    @model_validator(mode="after")
    def _schedule_and_plugin(self) -> JobSpec:
        if self.name is None or not self.name:
            self.name = self.id
        job_class = load_job_class(self.handler_path)
        try:
            job_class.validate_params(self.public_cfg)
        except JobConfigError as error:
            raise JobSpecFieldError("public_cfg", str(error), error.problems) from None
        if self.secret_cfg is not None:
            try:
                job_class.validate_secrets(self.secret_cfg)
            except JobConfigError as error:
                raise JobSpecFieldError("secret_cfg", str(error), error.problems) from None
        return self


JOB_FIELDS: tuple[str, ...] = tuple(JobSpec.model_fields)
# What an export writes: every field but the secrets, which never leave the database.
EXPORTED_FIELDS: tuple[str, ...] = tuple(name for name in JOB_FIELDS if name != "secret_cfg")


class JobSpecFieldError(ValueError):
    """A check across fields that failed on one named field.

    For a config that the plugin's model refused, `problems` maps each path inside it to its
    error (`JobConfigError.problems`), for forms that show the config as one field per key.
    """

    def __init__(self, field: str, message: str, problems: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.problems = problems or {}


def config_problems(error: ValidationError | JobSpecFieldError) -> dict[str, dict[str, str]]:
    """{"public_cfg" or "secret_cfg": {path: message}} of a JobSpec the plugin's models refused."""
    if isinstance(error, JobSpecFieldError):
        return {error.field: error.problems} if error.problems else {}
    found: dict[str, dict[str, str]] = {}
    for item in error.errors(include_input=False, include_url=False):
        context_error = (item.get("ctx") or {}).get("error")
        if isinstance(context_error, JobSpecFieldError) and context_error.problems:
            found[context_error.field] = context_error.problems
    return found


def field_errors(error: ValidationError | JobSpecFieldError) -> dict[str, str]:
    """{field: message} for a failed JobSpec validation, without any input value."""
    if isinstance(error, JobSpecFieldError):
        return {error.field: str(error)}
    errors: dict[str, str] = {}
    for item in error.errors(include_input=False, include_url=False):
        loc = [str(part) for part in item["loc"]]
        context_error = (item.get("ctx") or {}).get("error")
        if isinstance(context_error, JobSpecFieldError):
            errors[context_error.field] = str(context_error)
            continue
        field = loc[0] if loc else "__all__"
        message = item["msg"].removeprefix("Value error, ")
        if len(loc) > 1 and field not in ("secret_cfg",):
            message = f"{'.'.join(loc[1:])}: {message}"
        errors.setdefault(field, message)
    return errors
