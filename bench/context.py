"""The configuration of a benchmark run and the engine the engine benchmarks share.

`BenchConfig` holds every size, with the figures of issue 6 as defaults and smaller ones for
`--quick`. `Context.engine()` starts, once, the engine the run-overhead, schedule and
throughput benchmarks share: a Prefect server on PostgreSQL, a migrated ConnectHub database, the
work pool as ConnectHub's sync makes it and one `connecthub worker` (product defaults);
`Context.stop_engine()` stops it so that the sync and admin benchmarks measure on a quiet
machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bench.stack import Service, Stack
from tests.support.settings import use_settings

DEFAULTS: dict[str, Any] = {
    "pairs": 20,
    "sync_jobs": 1000,
    "admin_rows": [1_000, 100_000, 1_000_000],
    "admin_jobs": [100, 10_000],
    "admin_requests": 30,
    "schedule_jobs": 5,
    "schedule_minutes": 5,
    "burst_jobs": 20,
    "burst_variants": ["bare", "supervisor+prefetch=1"],
    "throughput_minutes": 10.0,
    "worker_limit": 4,
    "variants": ["supervisor", "bare"],
    "variant_minutes": 1.0,
}
QUICK: dict[str, Any] = {
    "pairs": 3,
    "sync_jobs": 50,
    "admin_rows": [1_000, 20_000],
    "admin_jobs": [100, 1_000],
    "admin_requests": 30,
    "schedule_jobs": 2,
    "schedule_minutes": 1,
    "burst_jobs": 4,
    "burst_variants": ["bare", "supervisor+prefetch=1"],
    "throughput_minutes": 1.0,
    "worker_limit": 4,
    "variants": ["supervisor"],
    "variant_minutes": 0.5,
}
BENCHMARKS = ("overhead", "schedule", "throughput", "sync", "admin")


@dataclass
class BenchConfig:
    quick: bool = False
    only: list[str] = field(default_factory=lambda: list(BENCHMARKS))
    output: Path = Path("docs/benchmarks.md")
    run_dir: Path = Path("/tmp/connecthub-bench")
    pairs: int = DEFAULTS["pairs"]
    sync_jobs: int = DEFAULTS["sync_jobs"]
    admin_rows: list[int] = field(default_factory=lambda: list(DEFAULTS["admin_rows"]))
    admin_jobs: list[int] = field(default_factory=lambda: list(DEFAULTS["admin_jobs"]))
    admin_requests: int = DEFAULTS["admin_requests"]
    schedule_jobs: int = DEFAULTS["schedule_jobs"]
    schedule_minutes: int = DEFAULTS["schedule_minutes"]
    burst_jobs: int = DEFAULTS["burst_jobs"]
    burst_variants: list[str] = field(default_factory=lambda: list(DEFAULTS["burst_variants"]))
    throughput_minutes: float = DEFAULTS["throughput_minutes"]
    worker_limit: int = DEFAULTS["worker_limit"]
    variants: list[str] = field(default_factory=lambda: list(DEFAULTS["variants"]))
    variant_minutes: float = DEFAULTS["variant_minutes"]
    candidate: str | None = None

    @classmethod
    def build(cls, quick: bool, **given: Any) -> BenchConfig:
        """Defaults (or QUICK's), overridden by every value in `given` that is not None."""
        base = dict(QUICK if quick else DEFAULTS)
        names = {f.name for f in fields(cls)}
        base.update({key: value for key, value in given.items() if value is not None})
        return cls(quick=quick, **{key: value for key, value in base.items() if key in names})

    def sizes(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in DEFAULTS}


@dataclass
class Engine:
    server: Service
    worker: Service
    env: dict[str, str]


class Context:
    def __init__(self, config: BenchConfig, stack: Stack) -> None:
        self.config = config
        self.stack = stack
        self._engine: Engine | None = None

    def engine(self) -> Engine:
        """The shared engine, started on first use; the settings point at it on return."""
        if self._engine is None:
            server = self.stack.prefect_server("main")
            self.stack.use_connecthub("main", server.url)
            self.stack.work_pool()
            env = {key: value for key, value in _connecthub_env().items()}
            worker = self.stack.worker("main")
            self._engine = Engine(server, worker, env)
        else:
            use_settings(None, **self._engine.env)
        return self._engine

    def stop_worker(self) -> None:
        """Stop the shared engine's worker, e.g. while its next settings are put in place;
        `restart_worker` starts the next one."""
        self.stack.stop(self.engine().worker)

    def restart_worker(self, name: str, limit: int | None = None, **env: str) -> Service:
        """Replace the shared engine's worker (e.g. with another --limit)."""
        engine = self.engine()
        self.stack.stop(engine.worker)
        engine.worker = self.stack.worker(name, limit=limit, **env)
        return engine.worker

    def stop_engine(self) -> None:
        if self._engine is not None:
            self.stack.stop(self._engine.worker)
            self.stack.stop(self._engine.server)
            self._engine = None


def _connecthub_env() -> dict[str, str]:
    import os

    keys = ("DATA_DIR", "DB_URL", "FERNET_KEY_PATH", "PREFECT_API_URL", "PREFECT_HOME")
    return {key: os.environ[key] for key in keys if key in os.environ}
