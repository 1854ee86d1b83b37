"""The configuration of a benchmark run and the engine the engine benchmarks share.

`BenchConfig` holds every size, with the figures of issues 6 and 11 as defaults (but for the
every-minute schedule, 3 minutes instead of issue 6's 5, so that a full run stays under ~55
minutes) and smaller ones for `--quick`. `Context.engine()` starts, once, the engine the
run-overhead, schedule and throughput benchmarks share: a Prefect server on PostgreSQL, a
migrated ConnectHub database, the work pool as ConnectHub's sync makes it, the bare flow's pool
(Prefect's default template) and one `connecthub worker` (product defaults).
`Context.use_worker(variant)` replaces that worker with a variant's (bench/settings.py: e.g.
`cold`, or `bare`: Prefect's own worker on the bare pool) and `Context.restore_worker()` puts
the product's back; `Context.stop_engine()` stops it all so that the sync and admin benchmarks
measure on a quiet machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bench.settings import BARE_POOL, Variant, polling_env, set_pool_command
from bench.stack import PostgresSampler, Service, Stack
from deployments.client import prefect_client
from tests.support.settings import use_settings

DEFAULTS: dict[str, Any] = {
    "pairs": 20,
    "sync_jobs": 1000,
    "admin_rows": [1_000, 100_000, 1_000_000],
    "admin_jobs": [100, 10_000],
    "admin_requests": 30,
    "schedule_jobs": 5,
    "schedule_minutes": 3,
    "burst_jobs": 20,
    "burst_variants": ["cold", "bare"],
    "top_jobs": 100,
    "top_variants": ["cold"],
    "throughput_minutes": 10.0,
    "worker_limit": 8,
    "leak_runs": 1000,
    "memory_children": 8,
    "variants": ["cold", "bare"],
    "variant_minutes": 1.5,
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
    "burst_variants": ["cold", "bare"],
    "top_jobs": 10,
    "top_variants": ["cold"],
    "throughput_minutes": 1.0,
    "worker_limit": 8,
    "leak_runs": 100,
    "memory_children": 3,
    "variants": ["cold", "bare"],
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
    top_jobs: int = DEFAULTS["top_jobs"]
    top_variants: list[str] = field(default_factory=lambda: list(DEFAULTS["top_variants"]))
    throughput_minutes: float = DEFAULTS["throughput_minutes"]
    worker_limit: int = DEFAULTS["worker_limit"]
    leak_runs: int = DEFAULTS["leak_runs"]
    memory_children: int = DEFAULTS["memory_children"]
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
    worker: Service  # the worker serving runs now: the product's, or a variant's
    env: dict[str, str]
    postgres: PostgresSampler  # CPU of this run's databases' backends


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
            self.stack.bare_pool(BARE_POOL)
            env = {key: value for key, value in _connecthub_env().items()}
            worker = self.stack.worker("main")
            postgres = PostgresSampler(self.stack.prefix)
            postgres.start()
            self._engine = Engine(server, worker, env, postgres)
        else:
            use_settings(None, **self._engine.env)
        return self._engine

    def stop_worker(self) -> None:
        """Stop the shared engine's worker, e.g. while its next settings are put in place;
        `use_worker` starts the next one."""
        self.stack.stop(self.engine().worker)

    def use_worker(self, variant: Variant, name: str) -> Service:
        """Replace the shared engine's worker with `variant`'s: Prefect's own worker on the bare
        pool for `bare`, else a `connecthub worker` with the variant's --limit and environment
        on ConnectHub's pool, whose command is set for the variant first (save jobs before
        this: their sync would set it back)."""
        engine = self.engine()
        self.stack.stop(engine.worker)
        if variant.bare:
            engine.worker = self.stack.prefect_worker(
                name, BARE_POOL, limit=variant.limit, **{**polling_env(), **variant.env})
        else:
            with prefect_client() as client:
                set_pool_command(client, supervisor=variant.supervisor)
            engine.worker = self.stack.worker(name, limit=variant.limit, **variant.env)
        return engine.worker

    def restore_worker(self, name: str) -> Service:
        """The product's worker and pool again."""
        return self.use_worker(Variant("connecthub", None), name)

    def stop_engine(self) -> None:
        if self._engine is not None:
            self._engine.postgres.stop()
            self.stack.stop(self._engine.worker)
            self.stack.stop(self._engine.server)
            self._engine = None


def _connecthub_env() -> dict[str, str]:
    import os

    keys = ("DATA_DIR", "DB_URL", "FERNET_KEY_PATH", "PREFECT_API_URL", "PREFECT_HOME")
    return {key: os.environ[key] for key in keys if key in os.environ}
