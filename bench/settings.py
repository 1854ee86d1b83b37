"""Worker and work-pool settings the benchmarks compare, written as short variant strings.

Without a token, a variant is the product: a `connecthub worker` with its defaults and the work
pool as ConnectHub's sync makes it, whose runs start as `deployments.sync.ENGINE_COMMAND`
(`python -m prefect.engine`, the engine directly). A variant is tokens joined by `+`:
`limit=N` (`connecthub worker --limit N`; `none` for no limit), `poll=S`
(PREFECT_WORKER_QUERY_SECONDS and PREFECT_WORKER_PREFETCH_SECONDS = S), `prefetch=S`
(PREFECT_WORKER_PREFETCH_SECONDS only: the worker starts a scheduled run's process up to S
seconds early, and Prefect's server holds it until the slot before it runs; ConnectHub's
default is 30), `supervisor` (the pool's job template leaves `command` unset, so Prefect's
process worker starts each run through its workspace supervisor, which starts Python and
imports Prefect once more before it execs the engine: ConnectHub's pool before the sync set
the command) and `bare` (the do-nothing flow instead of ConnectHub's).
`supervisor+prefetch=1` is ConnectHub as it was before its worker prefetched and its pool had
the command.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import WorkPoolUpdate

from connecthub.core.config import get_settings
from deployments.sync import ENGINE_COMMAND

TOKENS = "limit=N, poll=S, prefetch=S, supervisor, bare"


@dataclass
class Variant:
    label: str
    limit: int | None
    bare: bool = False
    supervisor: bool = False
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, default_limit: int | None) -> Variant:
        variant = cls(text, default_limit)
        for token in text.split("+"):
            name, _, value = token.partition("=")
            if name == "limit":
                variant.limit = None if value in ("none", "0") else int(value)
            elif name == "poll":
                variant.env.update(PREFECT_WORKER_QUERY_SECONDS=value,
                                   PREFECT_WORKER_PREFETCH_SECONDS=value)
            elif name == "prefetch":
                variant.env.update(PREFECT_WORKER_PREFETCH_SECONDS=value)
            elif name == "bare":
                variant.bare = True
            elif name == "supervisor":
                variant.supervisor = True
            elif name not in ("default", "connecthub"):
                raise ValueError(
                    f"unknown variant token '{token}' in '{text}'; tokens are {TOKENS}, "
                    "joined by '+'"
                )
        return variant

    @property
    def changes_worker(self) -> bool:
        return bool(self.env) or self.supervisor

    @property
    def outstanding(self) -> int:
        """Unfinished runs a feeder keeps for this worker: twice its limit."""
        return 2 * (self.limit or 4)


def set_pool_command(client: SyncPrefectClient, supervisor: bool) -> None:
    """Start the pool's runs through Prefect's workspace supervisor (True), or as the product's
    pool does, with ENGINE_COMMAND (False).

    Set it after saving jobs: ConnectHub's sync gives a pool without a command ENGINE_COMMAND
    again. And restart the worker: a running one may keep its copy of the pool for a while."""
    pool = client.read_work_pool(get_settings().work_pool)
    template = copy.deepcopy(pool.base_job_template)
    template["variables"]["properties"]["command"]["default"] = (
        None if supervisor else ENGINE_COMMAND
    )
    client.update_work_pool(pool.name, WorkPoolUpdate(base_job_template=template))


def product_worker() -> str:
    """The polling settings `connecthub worker` gives itself here, for a report's notes."""
    from deployments.worker import worker_environment

    env = worker_environment()
    return ", ".join(f"{key} = {env[key]}" for key in ("PREFECT_WORKER_QUERY_SECONDS",
                                                       "PREFECT_WORKER_PREFETCH_SECONDS"))
