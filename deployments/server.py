"""The Prefect server settings ConnectHub relies on, and the local server `connecthub up` starts.

`SERVER_SETTINGS` go to every Prefect server ConnectHub starts (`connecthub up`, the test
suite's server) and to the compose file's `prefect-server`:

- PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS=2 (Prefect: 30). A run that finds its
  job's concurrency limit full is rescheduled this much later, and once it gets the slot it waits
  until that time before it runs; with Prefect's 30 s, a second "Run now" of a busy job, or a
  queued scheduled run, started up to 30 s after the first ended, and runs queued behind each
  other advanced in 30 s steps. With 2 s the next run starts within about 3 s of the slot
  freeing (the worker polls every second and re-proposes waiting runs it has prefetched).
- PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED=false: ConnectHub's flow never pauses, and
  the service writes every 5 s.
- PREFECT_SERVER_SERVICES_FOREMAN_LOOP_SECONDS=60 (Prefect: 15): the foreman takes the
  database's write lock on every pass to mark silent workers offline; on SQLite every write lock
  is one more chance for Prefect's read-then-write requests (a run's labels, a worker's heartbeat)
  to fail with "database is locked" (answered 503). A dead worker is still marked offline within
  a few minutes, and ConnectHub's own heartbeat automation does not depend on it.
- PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED=events,orphans (Prefect: events): ConnectHub's
  retention deletes old flow runs through the API (deployments/retention.py); Prefect's vacuum
  then removes their logs, states and task runs, which the API delete leaves behind.
- PREFECT_SERVER_ANALYTICS_ENABLED=false: no telemetry from an operator's machine.

The embedded server keeps its database under DATA_DIR/prefect (SQLite).
"""

from __future__ import annotations

import sys
from pathlib import Path

SERVER_SETTINGS = {
    "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2",
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_FOREMAN_LOOP_SECONDS": "60",
    "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,orphans",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def server_api_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/api"


def server_environment(base: dict[str, str], home: Path, port: int) -> dict[str, str]:
    """`base` plus what a Prefect server on `port` with its files under `home` needs."""
    return {
        **base,
        **SERVER_SETTINGS,
        "PREFECT_HOME": str(home.resolve()),
        "PREFECT_API_URL": server_api_url(port),
    }


def server_argv(port: int) -> list[str]:
    return [
        sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
        "--port", str(port),
    ]
