"""The one place ConnectHub talks to Prefect.

- `deployments.client`: the Prefect API client, the flow and work-pool names, and the errors
  raised when Prefect cannot be reached.
- `deployments.sync`: Job rows -> Prefect deployments (incremental, idempotent).
- `deployments.runs`: run now and retry, through Prefect's `run_deployment`.
- `deployments.reconcile`: JobLog agrees with Prefect's own state of every flow run.
"""
