"""The `connecthub` command line as an operator runs it: real processes on a SQLite data dir,
with PREFECT_API_URL pointing at a closed port so that no sync can succeed."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy import update

from connecthub.db import crud, joblog
from connecthub.db.engine import session_scope
from connecthub.db.migrate import head_revision
from connecthub.db.models import JobLog
from connecthub.jobs.vocabulary import RunStatus, Trigger
from connecthub.security.fernet import decrypt_json
from tests.support.cli import EXAMPLE, Cli, one_line_error, save_jobs, tokens

REPO = Path(__file__).resolve().parents[1]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result
    assert "Traceback" not in result.stderr
    return result.stdout


@pytest.fixture
def fresh(tmp_path: Path) -> Cli:
    """A data dir with nothing in it yet (no database, no key)."""
    return Cli(data_dir=tmp_path / "data", cwd=tmp_path)


def keys(path: Path) -> list[str]:
    return path.read_text().split()


def test_fresh_install_apply_list_export(fresh: Cli) -> None:
    # An absent database is created on first use; `db upgrade` then has nothing to do.
    out = ok(fresh.run("jobs", "apply", "--no-sync", str(REPO / "examples" / "jobs.yaml")))
    assert f"database at schema {head_revision()}" in ok(fresh.run("db", "upgrade"))
    assert "applied 1 job(s): example.hello" in out

    stored = tokens(fresh.db_path)
    assert list(stored) == ["example.hello"]
    assert "demo-token" not in stored["example.hello"]
    assert stat.S_IMODE(fresh.key_path.stat().st_mode) == 0o600
    fernet = MultiFernet([Fernet(key.encode()) for key in keys(fresh.key_path)])
    assert json.loads(fernet.decrypt(stored["example.hello"].encode())) == {
        "token": "demo-token"
    }

    listed, exported = fresh.run_all([("jobs", "list"), ("jobs", "export")])
    lines = ok(listed).splitlines()
    assert lines[0].split() == ["ID", "CRON", "TZ", "ENABLED", "LAST", "RUN", "SYNC"]
    assert lines[1].split() == ["example.hello", "*", "*", "*", "*", "*", "UTC", "yes", "-",
                                "pending"]
    text = ok(exported)
    assert "demo-token" not in text
    assert stored["example.hello"][:24] not in text
    assert "secret_cfg" not in text
    (entry,) = yaml.safe_load(text)
    assert entry["id"] == "example.hello"
    assert entry["handler_path"] == EXAMPLE
    assert entry["public_cfg"] == {"name": "Mars"}


def test_apply_with_prefect_down_saves_and_records_the_sync_error(cli: Cli) -> None:
    result = cli.run(
        "jobs", "apply", str(REPO / "examples" / "jobs.yaml"), EXAMPLE_TOKEN="tok-from-env-55"
    )
    assert "applied 1 job(s): example.hello" in ok(result)
    assert "example.hello saved but not synced" in result.stderr
    assert "tok-from-env-55" not in result.stdout + result.stderr
    with sqlite3.connect(cli.db_path) as conn:
        (sync_error,) = conn.execute("SELECT sync_error FROM job").fetchone()
    assert "not reachable" in sync_error
    fernet = MultiFernet([Fernet(key.encode()) for key in keys(cli.key_path)])
    token = tokens(cli.db_path)["example.hello"]
    assert json.loads(fernet.decrypt(token.encode())) == {"token": "tok-from-env-55"}


def test_replaced_key_file_stops_every_command(cli: Cli) -> None:
    save_jobs({"example.hello": {"token": "demo-token"}, "other": None})
    replacement = Fernet.generate_key().decode() + "\n"
    cli.key_path.write_text(replacement)
    results = cli.run_all([
        ("jobs", "list"), ("rotate-key",),
        ("jobs", "apply", "--no-sync", str(REPO / "examples" / "jobs.yaml")),
    ])
    for result in results:
        error = one_line_error(result)
        assert str(cli.key_path) in error, result.args
        assert "cannot decrypt 1 of 1 stored secrets" in error
        assert "example.hello" not in result.stdout
    assert cli.key_path.read_text() == replacement  # nothing rotated, nothing regenerated
    assert list(tokens(cli.db_path)) == ["example.hello"]

    cli.key_path.unlink()
    error = one_line_error(cli.run("jobs", "list"))
    assert str(cli.key_path) in error
    assert "missing" in error
    assert not cli.key_path.exists()


def test_rotate_key_and_retire_old(cli: Cli) -> None:
    secrets = {"a.job": {"token": "alpha-secret-1"}, "b.job": {"token": "beta-secret-2"}}
    save_jobs({**secrets, "c.job": None})
    before = tokens(cli.db_path)
    (old_key,) = keys(cli.key_path)

    out = ok(cli.run("rotate-key"))
    assert "2 job secret(s) re-encrypted" in out
    rotated = keys(cli.key_path)
    assert len(rotated) == 2 and rotated[1] == old_key
    after = tokens(cli.db_path)
    for job_id, secret in secrets.items():
        assert after[job_id] != before[job_id]
        assert decrypt_json(after[job_id], job_id=job_id) == secret

    assert "retired 1 old key(s)" in ok(cli.run("rotate-key", "--retire-old"))
    assert keys(cli.key_path) == rotated[:1]
    assert stat.S_IMODE(cli.key_path.stat().st_mode) == 0o600
    for job_id, secret in secrets.items():
        assert decrypt_json(tokens(cli.db_path)[job_id], job_id=job_id) == secret

    # A new key nothing is encrypted with yet (a rotation interrupted before re-encrypting):
    # retiring the old key now would lose every secret, so it is refused.
    cli.key_path.write_text(f"{Fernet.generate_key().decode()}\n{rotated[0]}\n")
    interrupted = cli.key_path.read_text()
    error = one_line_error(cli.run("rotate-key", "--retire-old"))
    assert "not yet encrypted with the newest key" in error
    assert cli.key_path.read_text() == interrupted
    for job_id, secret in secrets.items():
        assert decrypt_json(tokens(cli.db_path)[job_id], job_id=job_id) == secret


def test_logs(cli: Cli) -> None:
    for flow_run_id, job_id, trigger in (("fr-1", "alpha", Trigger.SCHEDULE),
                                         ("fr-2", "beta", Trigger.MANUAL)):
        joblog.record_running(flow_run_id, 1, job_id=job_id, trigger=trigger, retry_of=None,
                              snapshot_params={})
    joblog.record_final("fr-1", 1, RunStatus.FAILED, job_id="alpha", error="remote said no")
    joblog.record_final("fr-2", 1, RunStatus.SUCCESS, job_id="beta")
    with session_scope() as session:  # a duration the test can name
        session.execute(update(JobLog).where(JobLog.flow_run_id == "fr-2").values(duration_ms=12))
    joblog.record_running("fr-1", 2, job_id="alpha", trigger=Trigger.PREFECT_RETRY, retry_of=None,
                          snapshot_params={})
    everything, only_alpha = cli.run_all([
        ("logs", "--json"), ("logs", "--json", "--job", "alpha", "--limit", "1"),
    ])
    rows = [json.loads(line) for line in ok(everything).splitlines()]
    assert [(r["job_id"], r["status"], r["attempt"]) for r in rows] == [
        ("alpha", "RUNNING", 2), ("beta", "SUCCESS", 1), ("alpha", "FAILED", 1),
    ]
    assert rows[2]["error"] == "remote said no"
    assert rows[2]["trigger"] == "schedule" and rows[2]["flow_run_id"] == "fr-1"
    assert rows[1]["duration_ms"] == 12
    assert {"id", "retry_of", "started_at", "finished_at"} <= set(rows[0])
    assert [json.loads(line)["attempt"] for line in ok(only_alpha).splitlines()] == [2]


def test_run_errors_are_one_line(cli: Cli) -> None:
    save_jobs({"example.hello": {"token": "demo-token"}})
    missing, bad_json, not_object, unknown_key, bad_url = cli.run_all([
        ("run", "no.such.job"),
        ("run", "example.hello", "--params", "{bad json"),
        ("run", "example.hello", "--params", "[1, 2]"),
        ("run", "example.hello", "--params", '{"nmae": "Venus"}'),
        ("run", "example.hello", "--params", '{"base_url": "ftp://x"}'),
    ])
    assert "no.such.job" in one_line_error(missing)
    assert "does not exist" in one_line_error(missing)
    assert "--params is not valid JSON" in one_line_error(bad_json)
    assert "--params must be a JSON object" in one_line_error(not_object)
    # Checked against the plugin's Params before any run exists (nothing reaches Prefect).
    assert "would refuse these params" in one_line_error(unknown_key)
    assert "nmae" in one_line_error(unknown_key)
    assert "base_url" in one_line_error(bad_url) and "http" in one_line_error(bad_url)
    with session_scope() as session:
        assert crud.recent_logs(session) == []
