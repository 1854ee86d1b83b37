"""Worker and work-pool settings the benchmarks compare, written as short variant strings.

Without a token, a variant is the product: a `connecthub worker` with its defaults (beside it,
the warm fork server) and the work pool as ConnectHub's sync makes it, whose runs start as
`deployments.sync.POOL_COMMAND` (`python -m deployments.launcher`: the run's process is forked
from the fork server). A variant is tokens joined by `+`:

- `cold`: CONNECTHUB_WARM_START=false in the worker's environment: no fork server, and the
  pool's launcher execs a fresh `python -m prefect.engine` for every run (the product's path
  before warm start, `deployments.sync.ENGINE_COMMAND`);
- `bare`: the do-nothing flow (bench/bare_flow.py) on a pool of its own with Prefect's default
  job template (no command: each run goes through Prefect's workspace supervisor, which execs
  the engine), served by a plain `prefect worker start --pool <it> --type process` with the
  product worker's polling settings: what a user of Prefect alone runs;
- `limit=N` (`--limit N` of the worker; `none` for no limit), `poll=S`
  (PREFECT_WORKER_QUERY_SECONDS and PREFECT_WORKER_PREFETCH_SECONDS = S), `prefetch=S`
  (PREFECT_WORKER_PREFETCH_SECONDS only: the worker starts a scheduled run's process up to S
  seconds early, and Prefect's server holds it until the slot before it runs; ConnectHub's
  default is 30);
- `supervisor`: ConnectHub's pool's job template leaves `command` unset, so Prefect's process
  worker starts each run through its workspace supervisor (ConnectHub's pool before the sync
  set a command). `supervisor+prefetch=1` is ConnectHub as it was before its worker prefetched.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import WorkPoolUpdate

from connecthub.core.config import get_settings
from deployments.sync import POOL_COMMAND

TOKENS = "cold, bare, limit=N, poll=S, prefetch=S, supervisor"
BARE_POOL = "bench-bare"  # the bare flow's pool, with Prefect's default job template
POLLING = ("PREFECT_WORKER_QUERY_SECONDS", "PREFECT_WORKER_PREFETCH_SECONDS")


@dataclass
class Variant:
    label: str
    limit: int | None
    bare: bool = False
    cold: bool = False
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
                variant.env.update(dict.fromkeys(POLLING, value))
            elif name == "prefetch":
                variant.env.update(PREFECT_WORKER_PREFETCH_SECONDS=value)
            elif name == "bare":
                variant.bare = True
            elif name == "cold":
                variant.cold = True
                variant.env.update(CONNECTHUB_WARM_START="false")
            elif name == "supervisor":
                variant.supervisor = True
            elif name not in ("default", "connecthub"):
                raise ValueError(
                    f"unknown variant token '{token}' in '{text}'; tokens are {TOKENS}, "
                    "joined by '+'"
                )
        if variant.bare and (variant.cold or variant.supervisor):
            raise ValueError(f"'{text}': `bare` runs on Prefect's own worker and pool; "
                             "`cold` and `supervisor` change ConnectHub's")
        return variant

    @property
    def changes_worker(self) -> bool:
        """Whether this variant needs another worker than the product's (or another pool)."""
        return bool(self.env) or self.supervisor or self.bare

    @property
    def outstanding(self) -> int:
        """Unfinished runs a feeder keeps for this worker: twice its limit."""
        return 2 * (self.limit or 4)

    @property
    def path(self) -> str:
        """How this variant's runs start, for a report."""
        if self.bare:
            return "Prefect's workspace supervisor, then the engine"
        if self.supervisor:
            return "Prefect's workspace supervisor, then the engine (ConnectHub's flow)"
        if self.cold:
            return "the launcher execs a fresh `python -m prefect.engine`"
        return "forked from the warm fork server"


def set_pool_command(client: SyncPrefectClient, supervisor: bool) -> None:
    """Start ConnectHub's pool's runs through Prefect's workspace supervisor (True), or as the
    product's pool does, with POOL_COMMAND (False).

    Set it after saving jobs: ConnectHub's sync gives a pool without a command POOL_COMMAND
    again. And restart the worker: a running one may keep its copy of the pool for a while."""
    pool = client.read_work_pool(get_settings().work_pool)
    template = copy.deepcopy(pool.base_job_template)
    template["variables"]["properties"]["command"]["default"] = (
        None if supervisor else POOL_COMMAND
    )
    client.update_work_pool(pool.name, WorkPoolUpdate(base_job_template=template))


def polling_env() -> dict[str, str]:
    """The polling settings `connecthub worker` gives itself, for Prefect's own worker."""
    from deployments.worker import worker_environment

    env = worker_environment()
    return {key: env[key] for key in POLLING}


def product_worker() -> str:
    """The polling settings `connecthub worker` gives itself here, for a report's notes."""
    return ", ".join(f"{key} = {value}" for key, value in polling_env().items())
