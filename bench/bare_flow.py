"""The engine-alone baseline: a Prefect flow that does nothing, deployed in ConnectHub's pool.

Its deployments are run by the same `connecthub worker` as ConnectHub's jobs, with the same
environment. It imports only Prefect, and it takes the same parameters as the generic flow
(`flows/execute_job.py`), so that what Prefect does for any flow with these parameters falls on
both sides: for instance, building a flow's parameter schema imports `pydantic.v1` (~0.1 s
here) as soon as the flow has a parameter. The difference between a run of it and a run of a
no-op ConnectHub job is then ConnectHub's own cost.
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
