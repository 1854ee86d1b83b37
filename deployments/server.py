"""The local Prefect server `connecthub up` starts: its command line and environment.

The embedded mode keeps Prefect's database under DATA_DIR/prefect (SQLite) and turns Prefect's
analytics off.
"""

from __future__ import annotations

import sys
from pathlib import Path


def server_api_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/api"


def server_environment(base: dict[str, str], data_dir: Path, port: int) -> dict[str, str]:
    """`base` plus what the embedded Prefect server on `port` needs."""
    return {
        **base,
        "PREFECT_HOME": str((data_dir / "prefect").resolve()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": server_api_url(port),
    }


def server_argv(port: int) -> list[str]:
    return [
        sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
        "--port", str(port),
    ]
