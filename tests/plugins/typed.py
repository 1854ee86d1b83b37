"""A test plugin with typed Params and Secrets of every kind the admin renders, and steps.

`TypedJob` declares a required text, a bounded integer, a choice, a yes/no, a nested object
(JSON) and two secrets (one required); its run has three steps ("fetch", "transform" with a
nested "page 1", "push"), and fails in "transform" when `params.fail_in_transform` is set.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from connecthub.jobs.base import BaseJob, step


class TypedJob(BaseJob):
    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

        target: str = Field(description="Name of the remote system.")
        batch_size: int = Field(default=100, ge=1, le=1000, description="Rows per request.")
        mode: Literal["full", "delta"] = "delta"
        fail_in_transform: bool = False
        filters: dict[str, str] = Field(default_factory=dict, description="Field filters.")

    class Secrets(BaseModel):
        api_key: str = Field(min_length=4)
        password: str | None = None

    def run(self, params: Params, secrets: Secrets) -> dict[str, Any]:
        with self.step("fetch"):
            self.logger.info("fetching from %s in batches of %d", params.target, params.batch_size)
            rows = list(range(3))
        self.transform(params, rows)
        with self.step("push"):
            self.logger.info("pushing %d rows", len(rows))
        return {"target": params.target, "rows": len(rows), "mode": params.mode}

    @step("transform")
    def transform(self, params: Params, rows: list[int]) -> None:
        with self.step("page 1"):
            self.logger.info("transforming %d rows", len(rows))
        if params.fail_in_transform:
            raise ValueError(f"cannot transform rows for {params.target}")
