"""Jobs as code: reading YAML and JSON job files, ${ENV} references, all-or-nothing apply
through the real `connecthub jobs apply` process, and export without secrets."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from connecthub.db import crud
from connecthub.db.engine import session_scope
from connecthub.jobs.files import JobFileError, export_job, read_job_file
from connecthub.security.fernet import decrypt_json

REPO = Path(__file__).resolve().parents[1]
CONNECTHUB = str(Path(sys.executable).with_name("connecthub"))
EXAMPLE = "extensions.example.job:ExampleJob"
ECHO = "tests.plugins.jobs:EchoJob"
TOKEN = "sk_live_jobsfile_1f0e9d8c7b"


def write(path: Path, jobs: object) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(jobs))
    else:
        path.write_text(yaml.safe_dump(jobs, sort_keys=False))
    return path


def job(job_id: str, **fields: object) -> dict[str, object]:
    data: dict[str, object] = {
        "id": job_id, "cron_expr": "*/15 * * * *", "handler_path": ECHO,
        "public_cfg": {"region": "eu"},
    }
    data.update(fields)
    return data


def apply(path: Path) -> list[str]:
    specs = read_job_file(path)
    with session_scope() as session:
        for spec in specs:
            crud.save_job(session, spec)
    return [spec.id for spec in specs]


def dump_jobs(db_path: Path) -> list[tuple]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT * FROM job ORDER BY id").fetchall()


def test_apply_yaml_file(sqlite_env: Path, tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(
        "# two jobs\n"
        "- id: example.hello\n"
        "  cron_expr: '* * * * *'\n"
        f"  handler_path: {EXAMPLE}\n"
        "  public_cfg: {name: Venus}\n"
        f"  secret_cfg: {{token: {TOKEN}}}\n"
        "- id: crm.sync\n"
        "  name: CRM sync\n"
        "  cron_expr: '@hourly'\n"
        "  timezone: Europe/Berlin\n"
        f"  handler_path: {ECHO}\n"
        "  enabled: false\n"
        "  tags: [crm]\n"
    )
    assert apply(path) == ["example.hello", "crm.sync"]
    with session_scope() as session:
        hello, crm = crud.get_job(session, "example.hello"), crud.get_job(session, "crm.sync")
        assert hello.public_cfg == {"name": "Venus"}
        assert TOKEN not in hello.secret_cfg
        assert decrypt_json(hello.secret_cfg) == {"token": TOKEN}
        assert (crm.name, crm.cron_expr, crm.timezone, crm.enabled, crm.tags) == (
            "CRM sync", "@hourly", "Europe/Berlin", False, ["crm"],
        )
        assert crm.secret_cfg is None


def test_apply_json_file_and_upsert(sqlite_env: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "jobs.json", {"jobs": [
        job("a.one", secret_cfg={"token": TOKEN}), job("a.two"),
    ]})
    assert apply(path) == ["a.one", "a.two"]
    write(path, [job("a.one", public_cfg={"region": "us"}, name="renamed")])
    assert apply(path) == ["a.one"]
    with session_scope() as session:
        jobs = {j.id: j for j in crud.list_jobs(session)}
        assert sorted(jobs) == ["a.one", "a.two"]
        assert jobs["a.one"].public_cfg == {"region": "us"}
        assert jobs["a.one"].name == "renamed"
        # No secret_cfg in the file keeps the stored secrets.
        assert decrypt_json(jobs["a.one"].secret_cfg) == {"token": TOKEN}


@pytest.mark.parametrize(
    ("content", "suffix", "expected"),
    [
        ("{not json", ".json", "is not valid JSON"),
        ("- id: [unclosed", ".yaml", "is not valid YAML"),
        ("id: just-a-mapping\n", ".yaml", "must hold a list of jobs"),
        ("- just a string\n", ".yaml", "job #1: each job must be a mapping"),
    ],
)
def test_malformed_files(tmp_path: Path, content: str, suffix: str, expected: str) -> None:
    path = tmp_path / f"jobs{suffix}"
    path.write_text(content)
    with pytest.raises(JobFileError, match=expected):
        read_job_file(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(JobFileError, match="cannot read"):
        read_job_file(tmp_path / "absent.yaml")


def test_duplicate_id_in_file(tmp_path: Path) -> None:
    path = write(tmp_path / "jobs.yaml", [job("dup.job"), job("other"), job("dup.job")])
    with pytest.raises(JobFileError, match=r"job 'dup\.job': the id appears twice"):
        read_job_file(path)


def test_error_names_the_job_and_the_field(tmp_path: Path) -> None:
    path = write(tmp_path / "jobs.yaml", [
        job("good.one"),
        job("bad.tz", timezone="Moon/Tranquility", secret_cfg={"token": TOKEN}),
    ])
    with pytest.raises(JobFileError) as caught:
        read_job_file(path)
    assert str(caught.value).startswith("job 'bad.tz': timezone: ")
    assert TOKEN not in str(caught.value)
    path = write(tmp_path / "jobs.yaml", [job("good.one"), {"cron_expr": "* * * * *"}])
    with pytest.raises(JobFileError, match=r"job #2: .*id"):
        read_job_file(path)


def test_env_references_in_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CH_TEST_TOKEN", TOKEN)
    monkeypatch.delenv("CH_TEST_UNSET", raising=False)
    path = write(tmp_path / "jobs.yaml", [job("env.job", secret_cfg={
        "token": "${CH_TEST_TOKEN}",
        "dsn": "postgresql://app:${CH_TEST_TOKEN}@db/app",
        "fallback": "${CH_TEST_UNSET:-demo-token}",
        "empty_default": "${CH_TEST_UNSET:-}",
        "nested": {"list": ["${CH_TEST_TOKEN}", 7]},
        "not_a_reference": "$CH_TEST_TOKEN and ${lower-case}",
    }, public_cfg={"left_alone": "${CH_TEST_TOKEN}"})])
    (spec,) = read_job_file(path)
    assert spec.secret_cfg == {
        "token": TOKEN,
        "dsn": f"postgresql://app:{TOKEN}@db/app",
        "fallback": "demo-token",
        "empty_default": "",
        "nested": {"list": [TOKEN, 7]},
        "not_a_reference": "$CH_TEST_TOKEN and ${lower-case}",
    }
    # Only secrets are resolved; public_cfg is stored as written.
    assert spec.public_cfg == {"left_alone": "${CH_TEST_TOKEN}"}


def test_missing_env_variable_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CH_TEST_MISSING", raising=False)
    path = write(tmp_path / "jobs.yaml", [
        job("first.job"),
        job("needs.env", secret_cfg={"db": {"password": "${CH_TEST_MISSING}"}}),
    ])
    with pytest.raises(JobFileError) as caught:
        read_job_file(path)
    message = str(caught.value)
    assert "needs.env" in message
    assert "secret_cfg.db.password" in message
    assert "CH_TEST_MISSING is not set" in message


def test_empty_env_variable_uses_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`${VAR:-default}` is the shell's (and docker compose's) syntax: the default applies
    when VAR is unset *or empty*, so an exported-but-empty EXAMPLE_TOKEN still gives the
    default rather than an empty credential."""
    monkeypatch.setenv("CH_TEST_EMPTY", "")
    path = write(tmp_path / "jobs.yaml", [
        job("env.empty", secret_cfg={"token": "${CH_TEST_EMPTY:-demo-token}"}),
    ])
    (spec,) = read_job_file(path)
    assert spec.secret_cfg == {"token": "demo-token"}


def test_export_never_contains_secrets(sqlite_env: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "jobs.yaml", [
        job("with.secret", secret_cfg={"token": TOKEN, "password": "pw-export-73"}),
        job("no.secret"),
    ])
    apply(path)
    with session_scope() as session:
        jobs = crud.list_jobs(session)
        tokens = [j.secret_cfg for j in jobs if j.secret_cfg]
        exported = [export_job(j) for j in jobs]
    assert len(tokens) == 1
    text = yaml.safe_dump(exported) + json.dumps(exported, default=str)
    for leaked in (TOKEN, "pw-export-73", tokens[0], tokens[0][:24], "secret_cfg"):
        assert leaked not in text
    assert [entry["id"] for entry in exported] == ["no.secret", "with.secret"]

    # The export is itself a valid jobs file, and re-applying it keeps the stored secrets.
    exported_path = tmp_path / "exported.yaml"
    exported_path.write_text(yaml.safe_dump(exported, sort_keys=False))
    assert apply(exported_path) == ["no.secret", "with.secret"]
    with session_scope() as session:
        job_row = crud.get_job(session, "with.secret")
        assert decrypt_json(job_row.secret_cfg) == {"token": TOKEN, "password": "pw-export-73"}
        assert job_row.public_cfg == {"region": "eu"}


def test_cli_apply_with_an_invalid_job_in_the_middle_writes_nothing(
    sqlite_env: Path, tmp_path: Path
) -> None:
    db_path = sqlite_env / "connecthub.db"
    key_path = sqlite_env / "fernet.key"
    # The child process imports plugins from the installed packages: use the example plugin.
    def example(job_id: str, **fields: object) -> dict[str, object]:
        return job(job_id, handler_path=EXAMPLE, public_cfg={"name": "Mars"}, **fields)

    apply(write(tmp_path / "before.yaml", [
        example("existing.job", secret_cfg={"token": "old-token-value"}),
    ]))
    before = dump_jobs(db_path)
    key_before = key_path.read_text()

    bad = write(tmp_path / "bad.yaml", [
        {**example("existing.job", secret_cfg={"token": TOKEN}), "public_cfg": {"name": "X"}},
        example("new.first", secret_cfg={"token": TOKEN}),
        example("broken.job", cron_expr="61 * * * *", secret_cfg={"token": TOKEN}),
        example("new.last"),
    ])
    env = {
        key: value for key, value in os.environ.items()
        if key not in ("CONNECTHUB_DEBUG", "LOG_DIR")
    }
    env.update(
        DATA_DIR=str(sqlite_env), DB_URL=f"sqlite:///{db_path}", FERNET_KEY_PATH=str(key_path),
        PREFECT_API_URL="http://127.0.0.1:9/api", PREFECT_HOME=str(tmp_path / "prefect-home"),
    )
    result = subprocess.run(
        [CONNECTHUB, "jobs", "apply", "--no-sync", str(bad)], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: job 'broken.job': cron_expr: ")
    assert "Traceback" not in result.stderr + result.stdout
    assert TOKEN not in result.stderr + result.stdout
    assert "applied" not in result.stdout
    assert dump_jobs(db_path) == before
    assert key_path.read_text() == key_before
