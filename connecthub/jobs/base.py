"""The plugin contract every integration job implements.

A job is a subclass of `BaseJob` with a `run(params, secrets)` method that returns a JSON-able
result. `params` is the job's `public_cfg` (or the override of a run), `secrets` its decrypted
`secret_cfg`. A job may declare pydantic models `Params` and `Secrets`: they are validated before
`run`, `run` then receives the validated models, and a mismatch is a `JobConfigError` naming the
field (never the value, which may be a secret). Jobs reach outside systems only through a
`connecthub.integrations.BaseClient`.

    class HelloJob(BaseJob):
        class Params(BaseModel):
            name: str

        def run(self, params, secrets):
            self.logger.info("hello %s", params.name)
            return {"greeting": f"Hello, {params.name}!"}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError


class JobConfigError(ValueError):
    """The params or secrets given to a job do not match what it declares."""


@dataclass(frozen=True)
class JobContext:
    """Where a job runs: its id, the Prefect flow run and attempt, and its logger."""

    job_id: str
    flow_run_id: str | None = None
    attempt: int = 1
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("extensions"))


def _describe(error: ValidationError, section: str) -> str:
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "(whole object)"
        problems.append(f"{section}.{where}: {item['msg']}")
    return "; ".join(problems)


def _validate(model: type[BaseModel] | None, data: dict[str, Any], section: str) -> Any:
    if model is None:
        return data
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise JobConfigError(_describe(error, section)) from None


class BaseJob:
    """Base class of every job plugin; subclasses implement `run`."""

    Params: ClassVar[type[BaseModel] | None] = None
    Secrets: ClassVar[type[BaseModel] | None] = None

    def __init__(self, context: JobContext) -> None:
        self.context = context
        self.logger = context.logger

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> Any:
        """`params` as `run` receives them; `JobConfigError` naming each bad field."""
        return _validate(cls.Params, params, "params")

    @classmethod
    def validate_secrets(cls, secrets: dict[str, Any]) -> Any:
        """`secrets` as `run` receives them; `JobConfigError` naming each bad field."""
        return _validate(cls.Secrets, secrets, "secrets")

    def run(self, params: Any, secrets: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement run(params, secrets)")
