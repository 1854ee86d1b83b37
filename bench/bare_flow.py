"""The Prefect-alone baseline: a Prefect flow that does nothing, on Prefect's own worker.

Its deployments are in a pool of their own (`bench.settings.BARE_POOL`), made as `prefect
work-pool create --type process` makes one (Prefect's default job template, no command), and
served by a plain `prefect worker start` with the product worker's polling settings: a run of it
is what a user of Prefect alone gets. It imports only Prefect, and it takes the same parameters
as the generic flow (`flows/execute_job.py`), so that what Prefect does for any flow with these
parameters falls on both sides: for instance, building a flow's parameter schema imports
`pydantic.v1` (~0.1 s here) as soon as the flow has a parameter.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

FLOW_NAME = "bench-do-nothing"
ENTRYPOINT = "bench/bare_flow.py:do_nothing"


@flow(name=FLOW_NAME, log_prints=False, persist_result=False)
def do_nothing(
    job_id: str = "bare", params: dict[str, Any] | None = None, retry_of: int | None = None
) -> None:
    """Nothing at all."""
