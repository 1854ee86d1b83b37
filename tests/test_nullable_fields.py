"""What an operator leaves empty stays empty: every nullable job field, set to "none" in a jobs
file or left blank in the admin's form, is stored as NULL and comes back as null through export
and a second apply (a column default once turned a typed "no limit" into a limit of 1)."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import pytest
import yaml

from connecthub.db import crud
from connecthub.db.engine import session_scope
from connecthub.jobs.files import export_job, read_job_file
from connecthub.jobs.spec import JobSpec
from tests.support.admin import HANDLER, RecordingClient, create_job, stored_job
from tests.support.cli import Cli

# A value other than None for each, so that the test can tell "kept" from "defaulted".
SET_VALUES: dict[str, Any] = {
    "description": "nightly export", "timeout_seconds": 300, "concurrency_limit": 3,
    "max_log_rows": 500,
}
# Nullable, but None is not stored: a name defaults to the id, secrets None keeps the stored ones.
NOT_STORED_AS_NULL = {"name", "secret_cfg"}


def _nullable(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(
        annotation
    )


NULLABLE = sorted(
    name for name, field in JobSpec.model_fields.items()
    if _nullable(field.annotation) and name not in NOT_STORED_AS_NULL
)


def test_the_nullable_fields_are_the_ones_tested() -> None:
    # A new nullable field of JobSpec must be added to SET_VALUES (and so to these tests).
    assert sorted(SET_VALUES) == NULLABLE


def base_job(**fields: Any) -> dict[str, Any]:
    return {
        "id": "nightly.export", "cron_expr": "0 3 * * *", "handler_path": HANDLER,
        "public_cfg": {"name": "Mars"}, **fields,
    }


def apply(path: Path) -> None:
    with session_scope() as session:
        for spec in read_job_file(path):
            crud.save_job(session, spec)


def exported() -> dict[str, Any]:
    with session_scope() as session:
        return export_job(crud.get_job(session, "nightly.export"))


@pytest.mark.parametrize("field", NULLABLE)
def test_jobs_file_null_round_trips(any_db: None, tmp_path: Path, field: str) -> None:
    jobs_file = tmp_path / "jobs.yaml"
    # Over a job that had a value, and for a job created with null.
    jobs_file.write_text(yaml.safe_dump([base_job(**{field: SET_VALUES[field]})]))
    apply(jobs_file)
    assert exported()[field] == SET_VALUES[field]
    jobs_file.write_text(yaml.safe_dump([base_job(**{field: None})]))
    apply(jobs_file)
    assert exported()[field] is None
    with session_scope() as session:
        crud.delete_job(session, "nightly.export")
    apply(jobs_file)
    first = exported()
    assert first[field] is None
    # Export, apply the export, export again: nothing changes.
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump([first]))
    apply(again)
    assert exported() == first


def test_cli_apply_and_export_keep_no_limit(cli: Cli, tmp_path: Path) -> None:
    jobs_file = tmp_path / "jobs.yaml"
    jobs_file.write_text(yaml.safe_dump([base_job(concurrency_limit=None, timeout_seconds=None)]))
    applied = cli.run("jobs", "apply", str(jobs_file), "--no-sync")
    assert applied.returncode == 0, applied.stderr
    export = cli.run("jobs", "export")
    assert export.returncode == 0, export.stderr
    (job,) = yaml.safe_load(export.stdout)
    assert job["concurrency_limit"] is None and job["timeout_seconds"] is None


@pytest.mark.parametrize("field", NULLABLE)
def test_admin_blank_round_trips(client: RecordingClient, field: str) -> None:
    created = create_job(client, id="nightly.export", **{field: ""})
    assert created.status_code == 302, created.text
    job = stored_job("nightly.export")
    assert job is not None and getattr(job, field) is None
    assert exported()[field] is None
    # The edit form shows it blank, and saving that form keeps it NULL.
    page = client.get("/admin/job/edit/nightly.export")
    assert page.status_code == 200
    form = {
        **dict.fromkeys(("description", "timeout_seconds"), ""),
        "id": "nightly.export", "name": "nightly.export", "handler_path": HANDLER,
        "cron_expr": "0 3 * * *", "timezone": "UTC", "enabled": "y",
        "public_cfg": '{"name": "Mars"}', "secret_cfg": "", "max_retries": "0",
        "retry_delay_seconds": "60", "concurrency_limit": "1", "collision_strategy": "ENQUEUE",
        "tags": "", "save": "Save", field: "",
    }
    saved = client.post("/admin/job/edit/nightly.export", data=form)
    assert saved.status_code == 302, saved.text
    assert getattr(stored_job("nightly.export"), field) is None
    # A value typed later is stored as typed.
    saved = client.post(
        "/admin/job/edit/nightly.export", data={**form, field: str(SET_VALUES[field])}
    )
    assert saved.status_code == 302, saved.text
    assert getattr(stored_job("nightly.export"), field) == SET_VALUES[field]
