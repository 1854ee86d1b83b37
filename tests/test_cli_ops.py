"""The operator commands of issue 13 as an operator runs them, in real processes on a SQLite
data dir with Prefect unreachable: a database created on first use but an old one refused,
`logs show` and the traceback in `logs --json`, alert channels masked, `prune --dry-run`, and
`status` failing when something is unhealthy."""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from connecthub.db import joblog
from connecthub.db.engine import get_engine, reset_engine, session_scope
from connecthub.db.migrate import upgrade
from connecthub.db.models import JobLog, utcnow
from connecthub.jobs.vocabulary import RunStatus, Trigger
from tests.support.cli import Cli, one_line_error
from tests.support.jobs import save
from tests.support.settings import use_settings

REPO = Path(__file__).resolve().parents[1]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result
    return result.stdout


def failed_log() -> int:
    flow_run_id = str(uuid.uuid4())
    joblog.record_running(flow_run_id, 1, job_id="crm.sync", trigger=Trigger.MANUAL,
                          snapshot_params={"page": 1}, retry_of=None)
    joblog.record_final(flow_run_id, 1, RunStatus.FAILED, job_id="crm.sync",
                        error="ValueError: bad page", traceback="Traceback (most recent)\n  x")
    return joblog.find_attempt(flow_run_id, 1).id


def test_an_older_schema_still_needs_db_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = Cli(data_dir=tmp_path / "data", cwd=tmp_path)
    use_settings(monkeypatch, DATA_DIR=str(cli.data_dir), DB_URL=f"sqlite:///{cli.db_path}",
                 FERNET_KEY_PATH=str(cli.key_path))
    upgrade(get_engine(), "0004")
    reset_engine()
    error = one_line_error(cli.run("jobs", "list"))
    assert "is at schema 0004" in error and "connecthub db upgrade" in error


def test_logs_show_and_the_traceback_in_json(cli: Cli) -> None:
    log_id = failed_log()
    shown = ok(cli.run("logs", "show", str(log_id)))
    assert "ValueError: bad page" in shown
    assert "Traceback (most recent)" in shown
    record = json.loads(ok(cli.run("logs", "show", str(log_id), "--json")))
    assert record["snapshot_params"] == {"page": 1}
    assert record["traceback"].startswith("Traceback")
    listed = [json.loads(line) for line in ok(cli.run("logs", "--json")).splitlines()]
    assert listed[0]["traceback"].startswith("Traceback")
    assert "no JobLog #999" in one_line_error(cli.run("logs", "show", "999"))


def test_alert_channels_from_the_cli(cli: Cli) -> None:
    secret = "hook-token-77aa"
    added = cli.run("alerts", "add", "ops", f"json://bot:{secret}@127.0.0.1:9/{secret}",
                    "--default")
    assert secret not in ok(added)
    listed = ok(cli.run("alerts", "list"))
    assert listed.split()[:2] == ["ops", "default"]
    assert secret not in listed
    assert secret not in cli.db_path.read_bytes().decode(errors="replace")
    test = cli.run("alerts", "test", "ops")  # nothing listens on port 9
    assert "was not delivered" in one_line_error(test)
    assert secret not in test.stderr
    assert "not an apprise URL" in one_line_error(cli.run("alerts", "add", "x", "nope://a"))
    assert "deleted alert channel ops" in ok(cli.run("alerts", "delete", "ops"))
    assert "no alert channel named 'ops'" in one_line_error(cli.run("alerts", "test", "ops"))


def test_prune_dry_run_counts_and_status_fails_when_unhealthy(cli: Cli) -> None:
    save("crm.sync")
    old = failed_log()
    failed_log()
    with session_scope() as session:
        session.execute(
            update(JobLog).where(JobLog.id == old).values(created_at=utcnow() - timedelta(days=40))
        )
    dry = cli.run("prune", "--dry-run")
    assert "would prune 1 JobLog row(s)" in dry.stdout
    assert "Prefect's flow runs were not pruned" in one_line_error(dry)
    with session_scope() as session:
        assert session.query(JobLog).count() == 2  # a dry run deletes nothing

    status = cli.run("status")
    assert status.returncode == 1
    assert "UNHEALTHY" in status.stdout
    assert "Prefect is not reachable" in status.stdout
    assert "1 job(s) failing: crm.sync" in status.stdout
