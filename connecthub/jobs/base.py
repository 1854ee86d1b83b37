"""The plugin contract every integration job implements.

A job is a subclass of `BaseJob` with a `run(params, secrets)` method that returns a JSON-able
result. `params` is the job's `public_cfg` (or the override of a run), `secrets` its decrypted
`secret_cfg`. A job may declare pydantic models `Params` and `Secrets`: they are validated before
`run`, `run` then receives the validated models, and a mismatch is a `JobConfigError` naming the
field (never the value, which may be a secret). Jobs reach outside systems only through a
`connecthub.integrations.BaseClient`.

A job marks its stages with `with self.step("fetch contacts"):` (or decorates a method with
`@step("fetch contacts")`). In a flow run each stage is a Prefect task run of its own in the run
graph, with its state, duration, logs (`self.logger` inside the block logs to the step) and
masked error; steps nest. The flow supplies how (`JobContext.step_runner`, so this contract
needs no Prefect); outside a flow run, e.g. in a unit test, the block just runs.

    class HelloJob(BaseJob):
        class Params(BaseModel):
            name: str

        def run(self, params, secrets):
            with self.step("greet"):
                self.logger.info("hello %s", params.name)
            return {"greeting": f"Hello, {params.name}!"}
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from connecthub.core.logging import mask

# A step name is a label in the run graph, not a place for data.
MAX_STEP_NAME = 100

Logger = logging.Logger | logging.LoggerAdapter
# Runs the block of one step under its (masked) name and yields the step's logger.
StepRunner = Callable[[str], AbstractContextManager[Logger]]
Method = TypeVar("Method", bound=Callable[..., Any])


class JobConfigError(ValueError):
    """The params or secrets given to a job do not match what it declares.

    `problems` maps each bad field's path (e.g. "base_url", "target.port"; "" for the whole
    object) to what is wrong with it, so a form can show each under its own field.
    """

    def __init__(self, message: str, problems: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or {}


@dataclass(frozen=True)
class JobContext:
    """Where a job runs: its id, the Prefect flow run and attempt, its logger and steps."""

    job_id: str
    flow_run_id: str | None = None
    attempt: int = 1
    logger: Logger = field(default_factory=lambda: logging.getLogger("extensions"))
    step_runner: StepRunner | None = None  # None: outside a flow run, steps just run


def _validate(model: type[BaseModel] | None, data: dict[str, Any], section: str) -> Any:
    if model is None:
        return data
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems: dict[str, str] = {}
        for item in error.errors(include_input=False, include_url=False):
            problems.setdefault(".".join(str(part) for part in item["loc"]), item["msg"])
        message = "; ".join(
            f"{section}.{where or '(whole object)'}: {msg}" for where, msg in problems.items()
        )
        raise JobConfigError(message, problems) from None


def step_name(name: object) -> str:
    """`name` as a run graph shows it: masked, one line, bounded."""
    text = " ".join(mask(str(name)).split())[:MAX_STEP_NAME]
    return text or "step"


def step(name: str | None = None) -> Callable[[Method], Method]:
    """Decorate a job's method to run it as one step (named `name`, or after the method)."""

    def decorate(method: Method) -> Method:
        title = name or method.__name__.replace("_", " ").strip()

        @functools.wraps(method)
        def stepped(self: BaseJob, *args: Any, **kwargs: Any) -> Any:
            with self.step(title):
                return method(self, *args, **kwargs)

        return stepped  # type: ignore[return-value]

    return decorate


class BaseJob:
    """Base class of every job plugin; subclasses implement `run`."""

    Params: ClassVar[type[BaseModel] | None] = None
    Secrets: ClassVar[type[BaseModel] | None] = None

    def __init__(self, context: JobContext) -> None:
        self.context = context
        self._loggers: list[Logger] = [context.logger]

    @property
    def logger(self) -> Logger:
        """The job's logger; inside a step, the step's (its lines show on the step's run)."""
        return self._loggers[-1]

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Run the block as one stage of the job: a task run in the flow run's graph."""
        runner = self.context.step_runner
        if runner is None:
            yield
            return
        with runner(step_name(name)) as logger:
            self._loggers.append(logger)
            try:
                yield
            finally:
                self._loggers.pop()

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
