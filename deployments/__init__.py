"""The one place ConnectHub talks to Prefect.

- `deployments.client`: the Prefect API client and the code location of the generic flow.
- `deployments.errors`: the errors raised when Prefect cannot be reached or refuses a run.
- `deployments.sync`: Job rows -> Prefect deployments (incremental, idempotent), the work pool.
- `deployments.runs`: run now and retry.
- `deployments.reconcile`: JobLog agrees with Prefect's own state of every flow run.
- `deployments.heartbeat`: the automation that crashes runs whose worker died.
- `deployments.worker` / `deployments.server`: how ConnectHub starts a worker and a Prefect
  server (their command lines and environment).
- `deployments.loop`: the sync and reconcile loop.
"""
