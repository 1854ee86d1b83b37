"""The job the benchmarks run: `bench.plugins:NoopJob` does nothing and returns {}."""

from __future__ import annotations

from typing import Any

from connecthub.jobs.base import BaseJob

HANDLER_PATH = "bench.plugins:NoopJob"


class NoopJob(BaseJob):
    def run(self, params: dict[str, Any], secrets: dict[str, Any]) -> Any:
        return {}
