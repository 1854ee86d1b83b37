"""Worker and work-pool settings the benchmarks compare, written as short variant strings.

A variant is tokens joined by `+`: `limit=N` (`connecthub worker --limit N`; `none` for no
limit), `poll=S` (PREFECT_WORKER_QUERY_SECONDS and PREFECT_WORKER_PREFETCH_SECONDS = S),
`prefetch=S` (PREFECT_WORKER_PREFETCH_SECONDS only: the worker starts a scheduled run's process
up to S seconds early, and Prefect's server holds it until the slot before it runs), `command`
(the work pool's job template sets `command`, so the worker starts `python -m prefect.engine`
directly instead of Prefect's workspace supervisor, which starts Python and Prefect once more
before it execs the engine) and `bare` (the do-nothing flow instead of ConnectHub's).
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import WorkPoolUpdate

from connecthub.core.config import get_settings

# By absolute path: the worker's PATH need not lead to this virtualenv's interpreter.
ENGINE_COMMAND = f"{sys.executable} -m prefect.engine"


@dataclass
class Variant:
    label: str
    limit: int | None
    bare: bool = False
    command: bool = False
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
            elif name == "command":
                variant.command = True
            elif name not in ("default", "connecthub"):
                raise ValueError(f"unknown variant token '{token}' in '{text}'")
        return variant

    @property
    def changes_worker(self) -> bool:
        return bool(self.env) or self.command

    @property
    def outstanding(self) -> int:
        """Unfinished runs a feeder keeps for this worker: twice its limit."""
        return 2 * (self.limit or 4)


def set_pool_command(client: SyncPrefectClient, direct: bool) -> None:
    """Let the pool's runs start the engine directly (True) or via Prefect's supervisor."""
    pool = client.read_work_pool(get_settings().work_pool)
    template = copy.deepcopy(pool.base_job_template)
    template["variables"]["properties"]["command"]["default"] = ENGINE_COMMAND if direct else None
    client.update_work_pool(pool.name, WorkPoolUpdate(base_job_template=template))
