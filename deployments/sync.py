"""Job rows -> Prefect deployments of the generic flow, incremental and idempotent.

Each Job is one deployment named after the job id, of the flow `connecthub-execute-job`, in the
ConnectHub work pool, with parameters `{"job_id": ...}`, the job's cron schedule and timezone,
its concurrency limit and collision strategy, and its tags; a disabled job's deployment is
paused; its description links the job's page in the admin (ADMIN_URL). Syncing reads what
exists, compares it with what should, and writes only the
difference, so a no-op sync makes no write and editing one job touches only its deployment.
A changed cron is updated in place (`update_deployment_schedule`): the schedule keeps its id,
and with it Prefect's idempotency keys for runs already scheduled, so no slot runs twice.

`sync_job(job_id)` runs after every save; `sync_all()` also deletes the deployments it made
(tagged `connecthub`) whose Job is gone, and is what the loop (`connecthub sync --loop`) runs every
CONNECTHUB_SYNC_INTERVAL_SECONDS (15 s). Prefect being down never fails a save: the job records
the error in `sync_error` and the next sync catches up. Both read and write a job's deployment
under that job's lock (`connecthub.db.locks`); `sync_job` records the deployment it made before
it lets go, and a pass of `sync_all` that found a deployment missing reads it again before it
creates it if that record changed since the pass began. Prefect's create is an upsert that
replaces the schedule, so a job saved (and synced) during the loop's pass must not be created
twice: the runs the scheduler made for the first schedule would run beside the second's.

The sync also creates the work pool. Its job template starts each run as
`python -m deployments.launcher` (POOL_COMMAND), which has the run's process forked from the
worker's warm fork server (see deployments/forkserver.py), or execs `python -m prefect.engine`
(ENGINE_COMMAND) when there is none. Either skips Prefect's default, the workspace supervisor,
which starts Python and imports Prefect once more before it execs the engine. A pool without a
command, or with ENGINE_COMMAND (an older ConnectHub's), is given POOL_COMMAND; a command an
operator chose is kept. `connecthub worker` puts its own interpreter first on PATH, so `python`
is ConnectHub's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import (
    DeploymentScheduleCreate,
    DeploymentUpdate,
    WorkPoolCreate,
    WorkPoolUpdate,
)
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.client.schemas.objects import ConcurrencyLimitStrategy, ConcurrencyOptions
from prefect.client.schemas.schedules import CronSchedule
from prefect.utilities.callables import parameter_schema
from prefect.workers.process import ProcessWorker
from sqlalchemy import select

from connecthub.core.config import get_settings
from connecthub.db import crud
from connecthub.db.engine import session_scope
from connecthub.db.locks import named_lock
from connecthub.db.models import Job
from connecthub.jobs.vocabulary import BASE_TAG, FLOW_NAME, admin_job_url
from deployments.client import (
    CODE_DIR,
    ENTRYPOINT,
    PrefectUnavailableError,
    prefect_client,
    read_or_none,
)
from deployments.heartbeat import ensure_heartbeat_automation

logger = logging.getLogger("connecthub.sync")
PAGE_SIZE = 200
ENGINE_COMMAND = "python -m prefect.engine"
POOL_COMMAND = "python -m deployments.launcher"


def pool_job_template() -> dict[str, Any]:
    """Prefect's process job template, its runs started by ConnectHub's launcher."""
    template = ProcessWorker.get_default_base_job_template()
    template["variables"]["properties"]["command"]["default"] = POOL_COMMAND
    return template


def _pool_command(template: dict[str, Any]) -> str | None:
    return template.get("variables", {}).get("properties", {}).get("command", {}).get("default")


@dataclass(frozen=True)
class DesiredDeployment:
    """What the deployment of one job should look like."""

    name: str
    description: str | None
    parameters: dict[str, Any]
    tags: list[str]
    cron: str
    timezone: str
    paused: bool
    concurrency_limit: int | None
    collision_strategy: str
    work_pool: str

    @classmethod
    def of(cls, job: Job, work_pool: str) -> DesiredDeployment:
        job_page = admin_job_url(get_settings().admin_url, job.id)
        link = f"[{job.id} in the ConnectHub admin]({job_page})"
        return cls(
            name=job.id,
            description=f"{job.description or job.name}\n\n{link}",
            parameters={"job_id": job.id},
            tags=sorted({BASE_TAG, *(job.tags or [])}),
            cron=job.cron_expr,
            timezone=job.timezone,
            paused=not job.enabled,
            concurrency_limit=job.concurrency_limit,
            collision_strategy=job.collision_strategy,
            work_pool=work_pool,
        )

    @property
    def schedule(self) -> CronSchedule:
        return CronSchedule(cron=self.cron, timezone=self.timezone)

    @property
    def concurrency_options(self) -> ConcurrencyOptions | None:
        if self.concurrency_limit is None:
            return None
        return ConcurrencyOptions(
            collision_strategy=ConcurrencyLimitStrategy(self.collision_strategy)
        )


@dataclass(frozen=True)
class CurrentDeployment:
    """What the sync compares of an existing deployment, read from Prefect's JSON.

    Read as JSON, not as the client's DeploymentResponse models: validating 1,000 of those (a
    cron parse each) took as long as Prefect took to send them (bench/findings.md).
    """

    id: UUID
    name: str
    flow_id: UUID
    data: dict[str, Any]

    @property
    def tags(self) -> list[str]:
        return list(self.data.get("tags") or [])

    @property
    def paused(self) -> bool:
        return bool(self.data.get("paused"))

    @property
    def concurrency_limit(self) -> int | None:
        limit = self.data.get("global_concurrency_limit") or {}
        return limit.get("limit")

    @property
    def collision_strategy(self) -> str | None:
        return (self.data.get("concurrency_options") or {}).get("collision_strategy")

    @property
    def schedules(self) -> list[dict[str, Any]]:
        return list(self.data.get("schedules") or [])

    @classmethod
    def of(cls, data: dict[str, Any]) -> CurrentDeployment:
        return cls(UUID(data["id"]), data["name"], UUID(data["flow_id"]), data)


def _pull_steps() -> list[dict[str, Any]]:
    return [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(CODE_DIR)}}
    ]


def _flow_parameter_schema() -> dict[str, Any]:
    from flows.execute_job import execute_job

    return parameter_schema(execute_job.fn).model_dump_for_openapi()


@dataclass
class SyncReport:
    """What a sync did; `writes` counts Prefect API calls that changed something."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    writes: int = 0


@dataclass
class SyncOutcome:
    job_id: str
    error: str | None = None
    writes: int = 0
    deployment_id: str | None = None


class _Syncer:
    """One sync pass over one Prefect client; counts its writes."""

    def __init__(self, client: SyncPrefectClient) -> None:
        self.client = client
        self.settings = get_settings()
        self.writes = 0
        self._flow_id: UUID | None = None
        self._schema: dict[str, Any] | None = None

    def ensure_infrastructure(self) -> None:
        """The work pool and the zombie-run automation exist (reads only, once created).

        A pool whose template leaves `command` unset (made by hand) or starts the engine
        directly (made by an older ConnectHub) gets POOL_COMMAND; a command an operator chose is
        left alone.
        """
        pool = read_or_none(lambda: self.client.read_work_pool(self.settings.work_pool))
        if pool is None:
            self.client.create_work_pool(
                WorkPoolCreate(
                    name=self.settings.work_pool, type="process",
                    base_job_template=pool_job_template(),
                ),
                overwrite=False,
            )
            self.writes += 1
        elif pool.type == "process" and _pool_command(pool.base_job_template) in (
            None, ENGINE_COMMAND
        ):
            template = pool.base_job_template or pool_job_template()
            template["variables"]["properties"]["command"]["default"] = POOL_COMMAND
            self.client.update_work_pool(pool.name, WorkPoolUpdate(base_job_template=template))
            self.writes += 1
        self.writes += ensure_heartbeat_automation(self.client)

    def flow_id(self) -> UUID:
        if self._flow_id is None:
            flow = read_or_none(lambda: self.client.read_flow_by_name(FLOW_NAME))
            if flow is not None:
                self._flow_id = flow.id
            else:
                self._flow_id = self.client.create_flow_from_name(FLOW_NAME)
                self.writes += 1
        return self._flow_id

    def schema(self) -> dict[str, Any]:
        if self._schema is None:
            self._schema = _flow_parameter_schema()
        return self._schema

    def existing(self) -> dict[str, CurrentDeployment]:
        found: dict[str, CurrentDeployment] = {}
        offset = 0
        flow_filter = FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])).model_dump(mode="json")
        while True:
            response = self.client.request(
                "POST", "/deployments/filter",
                json={"flows": flow_filter, "limit": PAGE_SIZE, "offset": offset},
            )
            page = [CurrentDeployment.of(item) for item in response.json()]
            for deployment in page:
                found[deployment.name] = deployment
                self._flow_id = deployment.flow_id
            if len(page) < PAGE_SIZE:
                return found
            offset += PAGE_SIZE

    def read_one(self, job_id: str) -> CurrentDeployment | None:
        response = read_or_none(lambda: self.client.request(
            "GET", "/deployments/name/{flow_name}/{deployment_name}",
            path_params={"flow_name": FLOW_NAME, "deployment_name": job_id},
        ))
        return CurrentDeployment.of(response.json()) if response is not None else None

    def create(self, desired: DesiredDeployment) -> UUID:
        deployment_id = self.client.create_deployment(
            flow_id=self.flow_id(),
            name=desired.name,
            description=desired.description,
            parameters=desired.parameters,
            tags=desired.tags,
            schedules=[DeploymentScheduleCreate(schedule=desired.schedule, active=True)],
            paused=desired.paused,
            concurrency_limit=desired.concurrency_limit,
            concurrency_options=desired.concurrency_options,
            work_pool_name=desired.work_pool,
            entrypoint=ENTRYPOINT,
            pull_steps=_pull_steps(),
            parameter_openapi_schema=self.schema(),
            enforce_parameter_schema=True,
        )
        self.writes += 1
        return deployment_id

    def apply(self, desired: DesiredDeployment, existing: CurrentDeployment | None) -> UUID:
        """Create the deployment, or update `existing`; its id."""
        if existing is None:
            return self.create(desired)
        self.update(desired, existing)
        return existing.id

    def update(self, desired: DesiredDeployment, existing: CurrentDeployment) -> bool:
        """Write what differs between `existing` and `desired`; True if anything did."""
        writes_before = self.writes
        wanted = {
            "description": desired.description,
            "parameters": desired.parameters,
            "tags": desired.tags,
            "work_pool_name": desired.work_pool,
            "entrypoint": ENTRYPOINT,
            "pull_steps": _pull_steps(),
            "parameter_openapi_schema": self.schema(),
            "enforce_parameter_schema": True,
        }
        current = {**existing.data, "tags": sorted(existing.tags)}
        changes = {key: value for key, value in wanted.items() if current.get(key) != value}
        wanted_strategy = desired.collision_strategy if desired.concurrency_limit else None
        if existing.concurrency_limit != desired.concurrency_limit or (
            desired.concurrency_limit and existing.collision_strategy != wanted_strategy
        ):
            changes["concurrency_limit"] = desired.concurrency_limit
            changes["concurrency_options"] = desired.concurrency_options
        if changes:
            self.client.update_deployment(existing.id, DeploymentUpdate(**changes))
            self.writes += 1
        self._update_schedule(desired, existing)
        if existing.paused != desired.paused:
            if desired.paused:
                self.client.pause_deployment(existing.id)
            else:
                self.client.resume_deployment(existing.id)
            self.writes += 1
        return self.writes > writes_before

    def _update_schedule(self, desired: DesiredDeployment, existing: CurrentDeployment) -> None:
        if not existing.schedules:
            self.client.create_deployment_schedules(existing.id, [(desired.schedule, True)])
            self.writes += 1
            return
        first, *extra = existing.schedules
        current = first.get("schedule") or {}
        if (
            current.get("cron") != desired.cron
            or (current.get("timezone") or "UTC") != desired.timezone
            or not first.get("active")
        ):
            self.client.update_deployment_schedule(
                existing.id, UUID(first["id"]), schedule=desired.schedule, active=True
            )
            self.writes += 1
        for schedule in extra:  # added by hand in the Prefect UI; the Job is the truth
            self.client.delete_deployment_schedule(existing.id, UUID(schedule["id"]))
            self.writes += 1

    def delete(self, deployment_id: UUID) -> None:
        if read_or_none(lambda: self.client.delete_deployment(deployment_id) or True):
            self.writes += 1


def _lock_name(job_id: str) -> str:
    """Creating a deployment replaces its schedules (Prefect's create is an upsert): the syncs
    of one job, in whichever process, read and write its deployment one at a time."""
    return f"sync-deployment:{job_id}"


def _recorded_deployment_id(job_id: str) -> str | None:
    with session_scope() as session:
        return session.scalar(select(Job.deployment_id).where(Job.id == job_id))


def _needs_record(job: Job, deployment_id: str) -> bool:
    return (
        job.sync_error is not None
        or job.deployment_id != deployment_id
        or job.synced_at is None
        or job.updated_at > job.synced_at
    )


def sync_job(job_id: str) -> SyncOutcome:
    """Make the deployment of `job_id` match its Job row (or delete it if the row is gone)."""
    outcome = SyncOutcome(job_id)
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is not None:
            session.expunge(job)
    try:
        with prefect_client() as client:
            syncer = _Syncer(client)
            syncer.ensure_infrastructure()
            with named_lock(_lock_name(job_id)):
                existing = syncer.read_one(job_id)
                if job is None:
                    if existing is not None:
                        syncer.delete(existing.id)
                    outcome.writes = syncer.writes
                    return outcome
                desired = DesiredDeployment.of(job, syncer.settings.work_pool)
                deployment_id = str(syncer.apply(desired, existing))
                # Recorded under the lock: a pass of the loop that found no deployment for
                # this job learns from it that the job's save created one meanwhile.
                if _needs_record(job, deployment_id):
                    with session_scope() as session:
                        crud.record_sync(session, job_id, deployment_id=deployment_id,
                                         error=None)
            outcome.writes = syncer.writes
            outcome.deployment_id = deployment_id
    except PrefectUnavailableError as error:
        outcome.error = f"{error}; will retry"
    except Exception as error:  # a sync failure must never undo the save that triggered it
        logger.exception("sync of job %s failed", job_id)
        outcome.error = f"sync failed: {type(error).__name__}: {error}"
    if job is not None and outcome.error:
        with session_scope() as session:
            crud.record_sync(
                session, job_id, deployment_id=outcome.deployment_id, error=outcome.error
            )
    if outcome.error:
        logger.warning("job %s not synced: %s", job_id, outcome.error)
    return outcome


def remove_job(job_id: str, deployment_id: str | None = None) -> str | None:
    """Delete the deployment of a deleted job; the error message, or None when done."""
    try:
        with prefect_client() as client:
            syncer = _Syncer(client)
            if deployment_id:
                syncer.delete(UUID(deployment_id))
            existing = syncer.read_one(job_id)
            if existing is not None:
                syncer.delete(existing.id)
    except PrefectUnavailableError as error:
        return f"{error}; the sync loop will delete the deployment when Prefect is back"
    return None


def sync_all() -> SyncReport:
    """Make every deployment of the flow match the Job table; raises when Prefect is down."""
    report = SyncReport()
    with session_scope() as session:
        jobs = crud.list_jobs(session)
        session.expunge_all()
    with prefect_client() as client:
        syncer = _Syncer(client)
        syncer.ensure_infrastructure()
        existing = syncer.existing()
        recorded: list[tuple[str, str | None, str | None]] = []
        for job in jobs:
            desired = DesiredDeployment.of(job, syncer.settings.work_pool)
            current = existing.pop(job.id, None)
            try:
                if current is None:
                    # Under the job's lock: the save of a new job syncs it too, and may have
                    # created its deployment since this pass read them all (it records it).
                    with named_lock(_lock_name(job.id)):
                        if _recorded_deployment_id(job.id) != job.deployment_id:
                            current = syncer.read_one(job.id)
                        writes_before = syncer.writes
                        deployment_id = str(syncer.apply(desired, current))
                    if current is None:
                        report.created.append(job.id)
                    elif syncer.writes > writes_before:
                        report.updated.append(job.id)
                    else:
                        report.unchanged += 1
                elif syncer.update(desired, current):
                    deployment_id = str(current.id)
                    report.updated.append(job.id)
                else:
                    deployment_id = str(current.id)
                    report.unchanged += 1
            except PrefectUnavailableError:
                raise
            except Exception as error:
                report.errors[job.id] = f"sync failed: {type(error).__name__}: {error}"
                recorded.append((job.id, None, report.errors[job.id]))
                continue
            if _needs_record(job, deployment_id):
                recorded.append((job.id, deployment_id, None))
        for name, orphan in existing.items():
            if BASE_TAG not in orphan.tags:
                continue  # not made by ConnectHub, e.g. the manual deployment of prefect.yaml
            syncer.delete(orphan.id)
            report.deleted.append(name)
        report.writes = syncer.writes
    if recorded:
        with session_scope() as session:
            for job_id, deployment_id, error in recorded:
                crud.record_sync(session, job_id, deployment_id=deployment_id, error=error)
    return report
