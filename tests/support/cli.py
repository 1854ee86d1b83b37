"""`Cli`: the `connecthub` command run in a child process on one SQLite data dir, with
PREFECT_API_URL pointing at a closed port (no sync can succeed), and checks of its results."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from connecthub.db import crud
from connecthub.db.engine import session_scope
from connecthub.jobs.spec import JobSpec
from tests.support.processes import free_port

CONNECTHUB = str(Path(sys.executable).with_name("connecthub"))
EXAMPLE = "extensions.example.job:ExampleJob"
TIMEOUT = 120


@dataclass
class Cli:
    """Runs `connecthub` in a child process against one data dir."""

    data_dir: Path
    cwd: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "connecthub.db"

    @property
    def key_path(self) -> Path:
        return self.data_dir / "fernet.key"

    def env(self) -> dict[str, str]:
        env = {
            key: value for key, value in os.environ.items()
            if key not in ("CONNECTHUB_DEBUG", "LOG_DIR", "EXAMPLE_TOKEN")
            and not key.startswith("PREFECT_")
        }
        env.update(
            DATA_DIR=str(self.data_dir),
            DB_URL=f"sqlite:///{self.db_path}",
            FERNET_KEY_PATH=str(self.key_path),
            PREFECT_API_URL=f"http://127.0.0.1:{free_port()}/api",
            PREFECT_HOME=str(self.cwd / "prefect-home"),
            **self.extra_env,
        )
        return env

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [CONNECTHUB, *args], cwd=self.cwd, env={**self.env(), **env},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run_all([args], **env)[0]

    def run_all(self, commands: list[tuple[str, ...]], **env: str
                ) -> list[subprocess.CompletedProcess[str]]:
        """Run independent commands at the same time (each takes ~2 s to start)."""
        processes = [(args, self.start(*args, **env)) for args in commands]
        results = []
        for args, process in processes:
            out, err = process.communicate(timeout=TIMEOUT)
            results.append(subprocess.CompletedProcess(args, process.returncode, out, err))
        return results


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single `error: ...` line of a command that failed cleanly with exit status 1."""
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def save_jobs(secrets: dict[str, dict | None]) -> None:
    with session_scope() as session:
        for job_id, secret in secrets.items():
            crud.save_job(session, JobSpec(
                id=job_id, cron_expr="*/5 * * * *", handler_path=EXAMPLE, secret_cfg=secret,
            ))


def tokens(db_path: Path) -> dict[str, str]:
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT id, secret_cfg FROM job WHERE secret_cfg IS NOT NULL")
        return dict(rows.fetchall())
