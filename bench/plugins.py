"""The jobs the benchmarks run: `bench.plugins:NoopJob` does nothing and returns {};
`bench.plugins:SleepJob` sleeps params['seconds']."""

from __future__ import annotations

import time
from typing import Any

from connecthub.jobs.base import BaseJob

HANDLER_PATH = "bench.plugins:NoopJob"


class NoopJob(BaseJob):
    def run(self, params: dict[str, Any], secrets: dict[str, Any]) -> Any:
        return {}


SLEEP_HANDLER_PATH = "bench.plugins:SleepJob"


class SleepJob(BaseJob):
    def run(self, params: dict[str, Any], secrets: dict[str, Any]) -> Any:
        time.sleep(float(params.get("seconds", 1)))
        return {}
