"""Benchmark 2: syncing N jobs to Prefect, against N raw `create_deployment` calls.

Each side gets a fresh Prefect server on its own PostgreSQL database (with the ConnectHub work
pool already there), so neither inherits the other's deployments or scheduler load:

- engine alone: `create_flow_from_name` + N `client.create_deployment(...)` with exactly the
  arguments ConnectHub's sync sends (cron schedule, pool, entrypoint, pull step, parameter
  schema, concurrency limit 1 with ENQUEUE, tags);
- ConnectHub: N jobs saved in its database (not timed), then one `sync_all()`.

Then, on the ConnectHub side: no-op resyncs of the N jobs (writes and seconds), one job edited
(cron and description) synced as the admin does it (`sync_job`) and by the loop (`sync_all`),
and one job disabled. Every Prefect API call is counted (bench.apicalls); writes are non-GET
calls other than Prefect's read-only POST /filter endpoints.
"""

from __future__ import annotations

import time
from typing import Any

from prefect.client.schemas.actions import DeploymentScheduleCreate, WorkPoolCreate
from prefect.client.schemas.objects import ConcurrencyLimitStrategy, ConcurrencyOptions
from prefect.client.schemas.schedules import CronSchedule
from prefect.utilities.callables import parameter_schema

from bench.apicalls import ApiCalls, count_api_calls
from bench.context import Context
from bench.fixtures import noop_spec
from bench.stats import Section, Summary, fmt_number, table
from connecthub.core.config import get_settings
from connecthub.db import crud
from connecthub.db.engine import session_scope
from connecthub.jobs.vocabulary import FLOW_NAME
from deployments.client import CODE_DIR, ENTRYPOINT, prefect_client
from deployments.sync import sync_all, sync_job

TITLE = "2. Sync: N jobs to Prefect deployments"
TARGET_RATIO = 1.2
TARGET_NOOP_SECONDS = 2.0
TARGET_EDIT_WRITES = 3
CRON = "15 3 * * *"
NOOP_REPEATS = 3


def _ensure_pool() -> None:
    with prefect_client() as client:
        client.create_work_pool(
            WorkPoolCreate(name=get_settings().work_pool, type="process"), overwrite=True
        )


def _raw_creates(count: int) -> tuple[float, ApiCalls]:
    """N raw create_deployment calls, as ConnectHub's sync makes them; (seconds, calls)."""
    from flows.execute_job import execute_job

    schema = parameter_schema(execute_job.fn).model_dump_for_openapi()
    pool = get_settings().work_pool
    with prefect_client() as client, count_api_calls() as calls:
        started = time.perf_counter()
        flow_id = client.create_flow_from_name(FLOW_NAME)
        for index in range(count):
            name = f"bench.sync-{index:05d}"
            client.create_deployment(
                flow_id=flow_id,
                name=name,
                description=name,
                parameters={"job_id": name},
                tags=["connecthub"],
                schedules=[DeploymentScheduleCreate(
                    schedule=CronSchedule(cron=CRON, timezone="UTC"), active=True
                )],
                paused=False,
                concurrency_limit=1,
                concurrency_options=ConcurrencyOptions(
                    collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
                ),
                work_pool_name=pool,
                entrypoint=ENTRYPOINT,
                pull_steps=[{"prefect.deployments.steps.set_working_directory": {
                    "directory": str(CODE_DIR)}}],
                parameter_openapi_schema=schema,
                enforce_parameter_schema=True,
            )
        seconds = time.perf_counter() - started
    return seconds, calls


def _timed_sync(func: Any) -> tuple[float, ApiCalls, Any]:
    with count_api_calls() as calls:
        started = time.perf_counter()
        result = func()
        seconds = time.perf_counter() - started
    return seconds, calls, result


def _save(job_ids: list[str], **fields: Any) -> None:
    with session_scope() as session:
        for job_id in job_ids:
            crud.save_job(session, noop_spec(job_id, CRON, **fields))


def run(ctx: Context) -> Section:
    section = Section("sync", TITLE)
    count = ctx.config.sync_jobs
    job_ids = [f"bench.sync-{index:05d}" for index in range(count)]

    # Engine alone, on its own fresh server.
    raw_server = ctx.stack.prefect_server("sync-raw")
    ctx.stack.use_connecthub("sync-raw", raw_server.url)
    _ensure_pool()
    raw_seconds, raw_calls = _raw_creates(count)
    ctx.stack.stop(raw_server)

    # ConnectHub, on another fresh server.
    server = ctx.stack.prefect_server("sync")
    ctx.stack.use_connecthub("sync", server.url)
    _ensure_pool()
    started = time.perf_counter()
    _save(job_ids)
    save_seconds = time.perf_counter() - started
    full_seconds, full_calls, full = _timed_sync(sync_all)
    if full.errors or len(full.created) != count:
        raise RuntimeError(f"full sync: {len(full.created)} created, errors {full.errors}")

    noop = [_timed_sync(sync_all) for _ in range(NOOP_REPEATS)]
    noop_seconds = Summary.of(item[0] for item in noop)
    noop_writes = max(item[1].writes for item in noop)
    noop_report_writes = max(item[2].writes for item in noop)

    edited = job_ids[count // 2]
    with session_scope() as session:
        crud.save_job(session, noop_spec(edited, "45 4 * * *", description="edited once"))
    edit_job_seconds, edit_job_calls, edit_job = _timed_sync(lambda: sync_job(edited))
    with session_scope() as session:
        crud.save_job(session, noop_spec(edited, "50 4 * * 1", description="edited twice"))
    edit_all_seconds, edit_all_calls, edit_all = _timed_sync(sync_all)
    with session_scope() as session:
        crud.save_job(session, noop_spec(edited, "50 4 * * 1", description="edited twice",
                                         enabled=False))
    disable_seconds, disable_calls, _ = _timed_sync(lambda: sync_job(edited))
    ctx.stack.stop(server)

    ratio = full_seconds / raw_seconds
    section.add(f"Full sync of {count:,} jobs / {count:,} raw create_deployment calls",
                f"{ratio:.2f}x ({fmt_number(full_seconds, 1)} s vs "
                f"{fmt_number(raw_seconds, 1)} s)",
                f"≤ {TARGET_RATIO}", ok=ratio <= TARGET_RATIO)
    section.add(f"Full sync of {count:,} jobs: Prefect API calls (writes)",
                f"{full_calls.total:,} ({full_calls.writes:,} writes; raw: "
                f"{raw_calls.total:,} calls, {raw_calls.writes:,} writes)")
    section.add(f"No-op resync of {count:,} jobs: Prefect writes (max of {NOOP_REPEATS})",
                f"{noop_writes} (SyncReport.writes {noop_report_writes})", "0",
                ok=noop_writes == 0)
    section.add(f"No-op resync of {count:,} jobs: seconds", noop_seconds.fmt("s"),
                f"< {TARGET_NOOP_SECONDS:g} s", ok=noop_seconds.max < TARGET_NOOP_SECONDS)
    section.add("One job edited (cron + description) among "
                f"{count:,}: Prefect writes, `sync_job` (as the admin's save)",
                f"{edit_job_calls.writes} ({edit_job_calls.total} calls, "
                f"{fmt_number(edit_job_seconds * 1000, 0)} ms)",
                f"≤ {TARGET_EDIT_WRITES}", ok=edit_job_calls.writes <= TARGET_EDIT_WRITES)
    section.add("One job edited again among "
                f"{count:,}: Prefect writes, `sync_all` (the loop)",
                f"{edit_all_calls.writes} ({edit_all_calls.total} calls, "
                f"{fmt_number(edit_all_seconds, 2)} s)",
                f"≤ {TARGET_EDIT_WRITES}", ok=edit_all_calls.writes <= TARGET_EDIT_WRITES)
    section.add("One job disabled: Prefect writes (`sync_job`)",
                f"{disable_calls.writes} ({disable_calls.total} calls, "
                f"{fmt_number(disable_seconds * 1000, 0)} ms)")
    section.note(
        f"Per deployment: raw {fmt_number(raw_seconds / count * 1000, 1)} ms, ConnectHub "
        f"{fmt_number(full_seconds / count * 1000, 1)} ms. Saving the {count:,} jobs in "
        f"ConnectHub's database first (validation, encryption; not part of the sync) took "
        f"{fmt_number(save_seconds, 1)} s. Outcome reported by sync_all: "
        f"{len(full.created)} created; edit: {edit_all.updated}; `sync_job` edit outcome "
        f"writes={edit_job.writes}."
    )
    rows = []
    for label, calls in (("raw creates", raw_calls), ("full sync", full_calls),
                         ("no-op resync", noop[0][1]), ("edit, sync_job", edit_job_calls),
                         ("edit, sync_all", edit_all_calls), ("disable, sync_job", disable_calls)):
        top = ", ".join(f"`{key}` x {value}" for key, value in
                        list(calls.by_endpoint().items())[:6])
        rows.append([label, str(calls.total), str(calls.writes),
                     fmt_number(calls.seconds, 2), top])
    section.note(
        "**Prefect API calls** (seconds = time spent waiting on the API):\n\n"
        + table(["operation", "calls", "writes", "seconds in API", "top endpoints"], rows)
    )
    return section
