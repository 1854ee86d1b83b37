"""The `connecthub` command line.

Every command runs the same start-up checks as the other entry points (schema current, key file
able to read the stored secrets) and reports any failure as one readable line on stderr with
exit status 1; set CONNECTHUB_DEBUG=1 to see the traceback of an unexpected error.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml

from connecthub.core.config import get_settings
from connecthub.core.logging import mask

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__.split("\n")[0])
db_app = typer.Typer(no_args_is_help=True, help="The database schema.")
jobs_app = typer.Typer(no_args_is_help=True, help="Jobs as code: apply, export, list, delete.")
app.add_typer(db_app, name="db")
app.add_typer(jobs_app, name="jobs")

F = TypeVar("F", bound=Callable[..., Any])


class CommandError(Exception):
    """A failure to report as one line, with exit status 1."""


def fail(message: str) -> typer.Exit:
    # One line, whatever the message quotes (an id or a path may hold a newline).
    one_line = mask(message).replace("\r", "\\r").replace("\n", "\\n")
    typer.echo(f"error: {one_line}", err=True)
    return typer.Exit(1)


def _database_error(error: Exception) -> str:
    """A database error without its SQL and parameters (they can hold a Fernet token)."""
    reason = getattr(error, "orig", None) or error
    first_line = (str(reason).strip().splitlines() or [""])[0]
    return f"the database refused this ({type(reason).__name__}: {first_line}); nothing was saved"


def _expected_errors() -> tuple[type[Exception], ...]:
    """Errors whose message is meant for the operator (imported late: Prefect is slow to load)."""
    from connecthub.app.supervisor import StartupError
    from connecthub.db.crud import JobNotFoundError
    from connecthub.db.migrate import SchemaOutdatedError
    from connecthub.jobs.files import JobFileError
    from connecthub.security.fernet import DecryptionError, KeyUnusableError
    from deployments.errors import EngineError

    return (
        CommandError, JobNotFoundError, SchemaOutdatedError, JobFileError, KeyUnusableError,
        DecryptionError, TimeoutError, StartupError, EngineError,
    )


def command(func: F) -> F:
    """Turn every error of a command into one readable line and exit status 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as error:
            if isinstance(error, _expected_errors()):
                raise fail(str(error)) from None
            if os.environ.get("CONNECTHUB_DEBUG"):
                raise
            from sqlalchemy.exc import SQLAlchemyError

            if isinstance(error, SQLAlchemyError):
                raise fail(_database_error(error)) from None
            raise fail(
                f"unexpected {type(error).__name__}: {error} (CONNECTHUB_DEBUG=1 shows the "
                "traceback)"
            ) from None

    return wrapper  # type: ignore[return-value]


def _prepare(check_key: bool = True) -> None:
    from connecthub.bootstrap import prepare

    prepare(check_key=check_key)


@db_app.command("upgrade")
@command
def db_upgrade() -> None:
    """Apply the database migrations (safe to run again)."""
    from connecthub.db.engine import get_engine
    from connecthub.db.migrate import current_revision, upgrade

    upgrade(get_engine())
    typer.echo(f"database at schema {current_revision(get_engine())}")


@app.command("rotate-key")
@command
def rotate_key(
    retire_old: Annotated[
        bool, typer.Option("--retire-old", help="Drop the old keys once nothing needs them.")
    ] = False,
) -> None:
    """Add a new Fernet key and re-encrypt every job's secrets with it."""
    from connecthub.db import crud
    from connecthub.db.engine import session_scope
    from connecthub.security import fernet

    _prepare()
    if retire_old:
        with session_scope() as session:
            dropped = fernet.retire_old_keys(crud.secret_tokens(session))
        typer.echo(f"retired {dropped} old key(s); {get_settings().key_path} holds one key")
        return

    def reencrypt(rotate: Callable[[str], str]) -> int:
        with session_scope() as session:
            return crud.reencrypt_secrets(session, rotate)

    count = fernet.rotate_key(reencrypt)
    typer.echo(
        f"new key added; {count} job secret(s) re-encrypted. The old key stays readable until "
        "`connecthub rotate-key --retire-old`."
    )


@jobs_app.command("apply")
@command
def jobs_apply(
    file: Annotated[Path, typer.Argument(help="YAML or JSON list of jobs.")],
    sync: Annotated[bool, typer.Option(help="Sync the changed jobs to Prefect.")] = True,
) -> None:
    """Create or update the jobs in FILE: all of them, or none if one is invalid."""
    from connecthub.app.operations import apply_job_file

    _prepare()
    job_ids = apply_job_file(file, sync=sync, warn=lambda line: typer.echo(line, err=True))
    typer.echo(f"applied {len(job_ids)} job(s): {', '.join(job_ids)}")


@jobs_app.command("export")
@command
def jobs_export(
    fmt: Annotated[str, typer.Option("--format", help="yaml or json")] = "yaml",
) -> None:
    """Print every job as a jobs file (secrets are never exported)."""
    from connecthub.db import crud
    from connecthub.db.engine import session_scope
    from connecthub.jobs.files import export_job

    if fmt not in ("yaml", "json"):
        raise CommandError("--format is yaml or json")
    _prepare()
    with session_scope() as session:
        jobs = [export_job(job) for job in crud.list_jobs(session)]
    if fmt == "json":
        typer.echo(json.dumps(jobs, indent=2, default=str))
    else:
        typer.echo(yaml.safe_dump(jobs, sort_keys=False, allow_unicode=True), nl=False)


@jobs_app.command("list")
@command
def jobs_list() -> None:
    """List the jobs with their schedule, state and last run."""
    from connecthub.db import crud
    from connecthub.db.engine import session_scope

    _prepare()
    with session_scope() as session:
        jobs = crud.list_jobs(session)
        last = crud.last_status_by_job(session, [job.id for job in jobs])
    if not jobs:
        typer.echo("no jobs; add some with `connecthub jobs apply FILE`")
        return
    typer.echo(f"{'ID':<30} {'CRON':<16} {'TZ':<16} {'ENABLED':<8} {'LAST RUN':<10} SYNC")
    for job in jobs:
        sync_state = "error" if job.sync_error else ("ok" if job.deployment_id else "pending")
        typer.echo(
            f"{job.id:<30} {job.cron_expr:<16} {job.timezone:<16} "
            f"{'yes' if job.enabled else 'no':<8} {last.get(job.id, '-'):<10} {sync_state}"
        )


@jobs_app.command("delete")
@command
def jobs_delete(job_id: str) -> None:
    """Delete a job and its Prefect deployment (its JobLog history stays)."""
    from connecthub.db import crud
    from connecthub.db.engine import session_scope
    from deployments.sync import remove_job

    _prepare()
    with session_scope() as session:
        deployment_id = crud.get_job(session, job_id).deployment_id
        crud.delete_job(session, job_id)
    error = remove_job(job_id, deployment_id)
    typer.echo(f"deleted {job_id}")
    if error:
        typer.echo(f"warning: {error}", err=True)


@app.command("logs")
@command
def logs(
    job: Annotated[str | None, typer.Option("--job", help="Only this job's runs.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Show the newest JobLog entries."""
    from connecthub.db import crud
    from connecthub.db.engine import session_scope

    _prepare()
    with session_scope() as session:
        rows = crud.recent_logs(session, job_id=job, limit=limit)
    for row in rows:
        if as_json:
            typer.echo(json.dumps({
                "id": row.id, "job_id": row.job_id, "status": row.status,
                "trigger": row.trigger, "attempt": row.attempt, "flow_run_id": row.flow_run_id,
                "retry_of": row.retry_of, "started_at": row.started_at,
                "finished_at": row.finished_at, "duration_ms": row.duration_ms,
                "error": row.error,
            }, default=str))
        else:
            typer.echo(
                f"#{row.id:<6} {row.job_id:<28} {row.status:<9} {row.trigger:<13} "
                f"attempt {row.attempt} {row.started_at or '-'} {row.error or ''}".rstrip()
            )


@app.command("plugins")
@command
def plugins() -> None:
    """List the job plugins that handler_path can name."""
    from connecthub.plugins.manager import available_plugins

    for path in available_plugins():
        typer.echo(path)


@app.command("sync")
@command
def sync(
    loop: Annotated[bool, typer.Option("--loop", help="Keep syncing and reconciling.")] = False,
) -> None:
    """Sync every job to its Prefect deployment (and, with --loop, keep JobLog reconciled)."""
    from deployments.loop import run_forever
    from deployments.sync import sync_all

    _prepare()
    if loop:
        typer.echo(f"sync/reconcile loop every {get_settings().sync_interval_seconds:g} s")
        run_forever(get_settings().sync_interval_seconds)
        return
    report = sync_all()
    typer.echo(
        f"{len(report.created)} created, {len(report.updated)} updated, "
        f"{len(report.deleted)} deleted, {report.unchanged} unchanged, "
        f"{report.writes} Prefect write(s)"
    )
    for job_id, error in report.errors.items():
        typer.echo(f"warning: {job_id}: {error}", err=True)
    if report.errors:
        raise typer.Exit(1)


@app.command("reconcile")
@command
def reconcile(
    since_minutes: Annotated[int, typer.Option(min=1)] = 60,
) -> None:
    """Mirror into JobLog the runs that ended in Prefect without their body recording it."""
    from datetime import timedelta

    from deployments.reconcile import Reconciler

    _prepare()
    written = Reconciler(lookback=timedelta(minutes=since_minutes)).run_once()
    typer.echo(f"{written} JobLog attempt(s) mirrored from Prefect")


def _print_outcome(log_id: int, wait: bool, timeout: float) -> None:
    from deployments.runs import wait_for_final

    typer.echo(f"JobLog #{log_id} started")
    if not wait:
        return
    final = wait_for_final(log_id, timeout_seconds=timeout)
    typer.echo(f"JobLog #{final.id} {final.status}" + (f": {final.error}" if final.error else ""))
    if final.status != "SUCCESS":
        raise typer.Exit(1)


@app.command("run")
@command
def run(
    job_id: str,
    params: Annotated[
        str | None, typer.Option(help="JSON object used instead of the job's public_cfg.")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the final status.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 600,
) -> None:
    """Start a run of JOB_ID now."""
    from deployments.runs import run_now

    override = None
    if params is not None:
        try:
            override = json.loads(params)
        except json.JSONDecodeError as error:
            raise CommandError(f"--params is not valid JSON: {error.msg}") from None
        if not isinstance(override, dict):
            raise CommandError("--params must be a JSON object")
    _prepare()
    log = run_now(job_id, override)
    _print_outcome(log.id, wait, timeout)


@app.command("retry")
@command
def retry(
    log_id: int,
    current: Annotated[
        bool, typer.Option("--current", help="Use the job's current config, not the snapshot.")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the final status.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 600,
) -> None:
    """Rerun the execution LOG_ID."""
    from deployments.runs import retry as start_retry

    _prepare()
    log = start_retry(log_id, "current" if current else "snapshot")
    _print_outcome(log.id, wait, timeout)


@app.command("worker")
@command
def worker(
    limit: Annotated[
        int | None, typer.Option(help="Most flow runs this worker runs at once.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Worker name shown in Prefect.")] = None,
) -> None:
    """Start a Prefect process worker on the ConnectHub work pool."""
    from deployments.worker import worker_argv, worker_environment

    _prepare()
    if not get_settings().prefect_api_url:
        raise CommandError("PREFECT_API_URL is not set: the worker needs a Prefect server")
    argv = worker_argv(limit, name)
    sys.stdout.flush()
    os.execvpe(argv[0], argv, worker_environment())


@app.command("admin")
@command
def admin(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    reload: Annotated[bool, typer.Option("--reload", help="Restart on code changes.")] = False,
) -> None:
    """Serve the admin UI (SQLAdmin at /admin)."""
    import uvicorn

    _prepare()
    uvicorn.run(
        "connecthub.app.main:create_app", factory=True, host=host, port=port, reload=reload,
        proxy_headers=True,
    )


@app.command("up")
@command
def up(
    port: Annotated[int, typer.Option(help="Port of the admin.")] = 8000,
    prefect_port: Annotated[int, typer.Option(help="Port of the local Prefect server.")] = 4200,
    host: Annotated[str, typer.Option(help="Address the admin listens on.")] = "127.0.0.1",
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the database, key file and logs live.")
    ] = None,
    with_example: Annotated[
        bool, typer.Option("--with-example", help="Load example.hello (runs every minute).")
    ] = False,
) -> None:
    """Run everything on this machine: Prefect server, worker, sync loop and admin."""
    from connecthub.app.supervisor import EmbeddedOptions, run_embedded

    if data_dir is not None:
        os.environ["DATA_DIR"] = str(data_dir)
    options = EmbeddedOptions(
        port=port, prefect_port=prefect_port, host=host, with_example=with_example
    )
    run_embedded(options, say=typer.echo)
    typer.echo("stopped")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
