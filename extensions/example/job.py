"""`ExampleJob`: greets `params.name`, and asks the greeting service too if `base_url` is set.

Handler path: `extensions.example.job:ExampleJob`. Params: `name` (default "Mars"), `base_url`
(default none: no network). Secrets: `token` (optional), sent as a bearer token. Its stages are
steps ("greet", then "ask the greeting service" when it has a URL): task runs in the Prefect UI.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connecthub.integrations import redact_url
from connecthub.jobs.base import BaseJob
from extensions.example.client import ExampleClient


class ExampleJob(BaseJob):
    """Returns `{"greeting": ...}`, plus `"remote"`: the service's JSON, when it has a URL."""

    class Params(BaseModel):
        # A misspelt key would otherwise be ignored silently and its default used.
        model_config = ConfigDict(extra="forbid")

        name: str = Field(default="Mars", description="Who to greet.")
        base_url: str | None = Field(
            default=None, description="The greeting service to ask too; blank: greet locally."
        )

        @field_validator("base_url")
        @classmethod
        def _http_url(cls, value: str | None) -> str | None:
            if value is not None and not value.startswith(("http://", "https://")):
                raise ValueError("must be an http:// or https:// URL")
            return value

    class Secrets(BaseModel):
        token: str | None = Field(default=None, description="Bearer token of the service.")

    def run(self, params: Params, secrets: Secrets) -> dict[str, Any]:
        with self.step("greet"):
            greeting = f"Hello, {params.name}!"
            self.logger.info("greeting %s", params.name)
        if params.base_url is None:
            return {"greeting": greeting}
        with self.step("ask the greeting service"):
            self.logger.info(
                "greeting %s via %s (%s)",
                params.name,
                redact_url(params.base_url),
                "with a token" if secrets.token else "without a token",
            )
            with ExampleClient(params.base_url, token=secrets.token) as client:
                remote = client.greet(params.name)
        return {"greeting": greeting, "remote": remote}
