"""How ConnectHub starts a Prefect worker on its work pool, and the environment of its runs.

The worker polls every CONNECTHUB_WORKER_POLL_SECONDS, starts scheduled runs 30 s early (the
server holds each run until its slot, so process start-up no longer makes runs late), makes
every flow run send heartbeats (see `deployments.heartbeat`), and hands its runs the same
database, key file, log directory and Prefect server as ConnectHub's own processes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from connecthub.core.config import get_settings
from deployments.heartbeat import HEARTBEAT_SECONDS


def worker_environment() -> dict[str, str]:
    """The environment of a ConnectHub worker and of the flow runs it starts."""
    settings = get_settings()
    env = dict(os.environ)
    env.setdefault("PREFECT_WORKER_QUERY_SECONDS", f"{settings.worker_poll_seconds:g}")
    env.setdefault("PREFECT_WORKER_PREFETCH_SECONDS", "30")
    env.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_SECONDS))
    # The pool starts runs as `python -m prefect.engine`: `python` is this interpreter.
    env["PATH"] = os.pathsep.join(
        filter(None, [str(Path(sys.executable).parent), env.get("PATH")])
    )
    env["DATA_DIR"] = str(settings.data_dir.resolve())
    env["DB_URL"] = settings.database_url
    env["FERNET_KEY_PATH"] = str(settings.key_path.resolve())
    if settings.log_dir is not None:
        env["LOG_DIR"] = str(settings.log_dir.resolve())
    if settings.prefect_api_url:
        env["PREFECT_API_URL"] = settings.prefect_api_url
    return env


def worker_argv(limit: int | None = None, name: str | None = None) -> list[str]:
    """`prefect worker start` on the ConnectHub work pool."""
    argv = [
        sys.executable, "-m", "prefect", "worker", "start",
        "--pool", get_settings().work_pool, "--type", "process",
    ]
    if limit:
        argv += ["--limit", str(limit)]
    if name:
        argv += ["--name", name]
    return argv
