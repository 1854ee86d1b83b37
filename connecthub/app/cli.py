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

from connecthub.core.config import DEFAULT_PREFECT_PORT, get_settings
from connecthub.core.logging import mask

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__.split("\n")[0])
db_app = typer.Typer(no_args_is_help=True, help="The database schema.")
jobs_app = typer.Typer(no_args_is_help=True, help="Jobs as code: apply, export, list, delete.")
alerts_app = typer.Typer(no_args_is_help=True, help="Alert channels: add, list, test, delete.")
logs_app = typer.Typer(help="The JobLog: the newest entries, or one execution whole.")
users_app = typer.Typer(no_args_is_help=True, help="Users and roles: viewer, operator, admin.")
tokens_app = typer.Typer(no_args_is_help=True, help="API tokens: create, list, revoke.")
app.add_typer(db_app, name="db")
app.add_typer(jobs_app, name="jobs")
app.add_typer(alerts_app, name="alerts")
app.add_typer(logs_app, name="logs")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")

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
    from connecthub.alerts import ChannelError
    from connecthub.app.job_changes import JobChangeError
    from connecthub.app.supervisor import StartupError
    from connecthub.db.crud import JobNotFoundError
    from connecthub.db.migrate import SchemaOutdatedError
    from connecthub.db.tokens import TokenError
    from connecthub.db.users import UserError
    from connecthub.jobs.files import JobFileError
    from connecthub.security.fernet import DecryptionError, KeyUnusableError
    from deployments.errors import EngineError

    return (
        CommandError, JobNotFoundError, SchemaOutdatedError, JobFileError, KeyUnusableError,
        DecryptionError, TimeoutError, StartupError, EngineError, ChannelError, UserError,
        TokenError, JobChangeError,
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


def _actor() -> Any:
    """Who the audit trail names for this command."""
    from connecthub.app.actors import cli_actor

    return cli_actor()


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
    from connecthub.db import audit, crud
    from connecthub.db.engine import session_scope
    from connecthub.security import fernet

    _prepare()
    if retire_old:
        with session_scope() as session:
            dropped = fernet.retire_old_keys(crud.secret_tokens(session))
            audit.record(session, _actor(), "key.retire", str(get_settings().key_path),
                         {"keys_dropped": dropped})
        typer.echo(f"retired {dropped} old key(s); {get_settings().key_path} holds one key")
        return

    def reencrypt(rotate: Callable[[str], str]) -> int:
        with session_scope() as session:
            return crud.reencrypt_secrets(session, rotate)

    count = fernet.rotate_key(reencrypt)
    with session_scope() as session:
        audit.record(session, _actor(), "key.rotate", str(get_settings().key_path),
                     {"secrets_reencrypted": count})
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
    job_ids = apply_job_file(
        file, _actor(), sync=sync, warn=lambda line: typer.echo(line, err=True)
    )
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
    from connecthub.app import job_changes
    from connecthub.db.engine import session_scope

    _prepare()
    with session_scope() as session:
        deployment_id = job_changes.delete_in(session, job_id, _actor())
    error = job_changes.remove_deployment(job_id, deployment_id)
    typer.echo(f"deleted {job_id}")
    if error:
        typer.echo(f"warning: {error}", err=True)


def _log_record(row: Any, *, whole: bool = False) -> dict[str, Any]:
    """A JobLog row as JSON; `whole` adds the params and result (the list leaves them out)."""
    record = {
        "id": row.id, "job_id": row.job_id, "status": row.status, "trigger": row.trigger,
        "attempt": row.attempt, "flow_run_id": row.flow_run_id, "retry_of": row.retry_of,
        "created_at": row.created_at, "started_at": row.started_at,
        "finished_at": row.finished_at, "duration_ms": row.duration_ms, "error": row.error,
        "traceback": row.traceback,
    }
    if whole:
        record.update(snapshot_params=row.snapshot_params, result=row.result)
    return record


@logs_app.callback(invoke_without_command=True)
@command
def logs(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Option("--job", help="Only this job's runs.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Show the newest JobLog entries (`connecthub logs show ID` shows one whole)."""
    from connecthub.db import crud
    from connecthub.db.engine import session_scope

    if ctx.invoked_subcommand is not None:
        return
    _prepare()
    with session_scope() as session:
        rows = crud.recent_logs(session, job_id=job, limit=limit)
    for row in rows:
        if as_json:
            typer.echo(json.dumps(_log_record(row), default=str))
        else:
            typer.echo(
                f"#{row.id:<6} {row.job_id:<28} {row.status:<9} {row.trigger:<13} "
                f"attempt {row.attempt} {row.started_at or '-'} {row.error or ''}".rstrip()
            )


@logs_app.command("show")
@command
def logs_show(
    log_id: Annotated[int, typer.Argument(help="The JobLog id.", min=1)],
    as_json: Annotated[bool, typer.Option("--json", help="As one JSON object.")] = False,
) -> None:
    """Show one execution whole: status, params, result, error and traceback."""
    from connecthub.db.engine import session_scope
    from connecthub.db.models import JobLog

    _prepare()
    with session_scope() as session:
        row = session.get(JobLog, log_id)
        if row is None:
            raise CommandError(f"no JobLog #{log_id}; `connecthub logs` lists the newest")
        record = _log_record(row, whole=True)
    if as_json:
        typer.echo(json.dumps(record, default=str, indent=2))
        return
    for key, value in record.items():
        if value is None or key == "traceback":
            continue
        shown = json.dumps(value, default=str) if isinstance(value, dict | list) else value
        typer.echo(f"{key + ':':<16} {shown}")
    if record["traceback"]:
        typer.echo(f"traceback:\n{record['traceback'].rstrip()}")


@alerts_app.command("add")
@command
def alerts_add(
    name: Annotated[str, typer.Argument(help="The channel's name, e.g. ops-mail.")],
    url: Annotated[str, typer.Argument(help="An apprise URL: mailto://, json://, slack://...")],
    default: Annotated[
        bool, typer.Option("--default", help="Jobs that name no channel alert this one.")
    ] = False,
) -> None:
    """Add (or replace) the alert channel NAME; its URL is stored encrypted."""
    from connecthub.alerts import add_channel
    from connecthub.db import audit
    from connecthub.db.engine import session_scope

    _prepare()
    with session_scope() as session:
        masked = add_channel(session, name, url, default=default).masked_url
        audit.record(session, _actor(), "alert_channel.add", name, {"default": default})
    typer.echo(f"alert channel {name} saved{' (default)' if default else ''}: {masked}")


@alerts_app.command("list")
@command
def alerts_list() -> None:
    """List the alert channels, their credentials masked."""
    from connecthub.alerts.channels import list_channels
    from connecthub.db.engine import session_scope

    _prepare()
    with session_scope() as session:
        channels = [(c.name, c.is_default, c.masked_url) for c in list_channels(session)]
    if not channels:
        typer.echo("no alert channels; add one with `connecthub alerts add NAME URL --default`")
    for name, is_default, masked in channels:
        typer.echo(f"{name:<24} {'default' if is_default else '-':<8} {masked}")


@alerts_app.command("test")
@command
def alerts_test(name: str) -> None:
    """Send a test alert through the channel NAME now."""
    from connecthub.alerts import send
    from connecthub.alerts.channels import channel_url, get_channel
    from connecthub.alerts.messages import test_message
    from connecthub.db.engine import session_scope
    from connecthub.db.models import utcnow

    _prepare()
    with session_scope() as session:
        url = channel_url(get_channel(session, name))
    message = test_message(name, utcnow())
    error = send(url, message.title, message.body)
    if error:
        raise CommandError(f"the test alert to {name} was not delivered: {error}")
    typer.echo(f"test alert delivered to {name}")


@alerts_app.command("delete")
@command
def alerts_delete(name: str) -> None:
    """Delete the alert channel NAME."""
    from connecthub.alerts import delete_channel
    from connecthub.db import audit
    from connecthub.db.engine import session_scope

    _prepare()
    with session_scope() as session:
        delete_channel(session, name)
        audit.record(session, _actor(), "alert_channel.delete", name)
    typer.echo(f"deleted alert channel {name}")


def _role(value: str) -> Any:
    from connecthub.security.roles import Role

    try:
        return Role.parse(value)
    except ValueError as error:
        raise CommandError(str(error)) from None


def _new_password(from_stdin: bool) -> tuple[str, bool]:
    """The password read from stdin (one line), or a generated one; and whether generated."""
    from connecthub.security.passwords import generate_password

    if not from_stdin:
        return generate_password(), True
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CommandError("no password on stdin (one line expected)")
    return password, False


def _say_password(username: str, password: str, generated: bool) -> None:
    if generated:
        typer.echo(f"one-time password for {username} (shown only now): {password}")


@users_app.command("add")
@command
def users_add(
    username: str,
    role: Annotated[str, typer.Option("--role", help="viewer, operator or admin.")] = "viewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Add a user; prints a generated one-time password unless --password-stdin."""
    from connecthub.db import users
    from connecthub.db.engine import session_scope

    chosen = _role(role)
    password, generated = _new_password(password_stdin)
    _prepare()
    with session_scope() as session:
        user = users.create_user(session, username, chosen, password, actor=_actor())
        name = user.username
    typer.echo(f"added user {name} ({chosen.value})")
    _say_password(name, password, generated)


@users_app.command("list")
@command
def users_list() -> None:
    """List the users, their roles and last login."""
    from connecthub.db import users
    from connecthub.db.engine import session_scope

    _prepare()
    with session_scope() as session:
        rows = [(u.username, u.role, u.disabled, u.last_login_at)
                for u in users.list_users(session)]
    typer.echo(f"{'USERNAME':<30} {'ROLE':<9} {'STATE':<9} LAST LOGIN")
    for username, role, disabled, last_login in rows:
        state = "disabled" if disabled else "active"
        shown = f"{last_login:%Y-%m-%d %H:%M} UTC" if last_login else "never"
        typer.echo(f"{username:<30} {role:<9} {state:<9} {shown}")


@users_app.command("set-role")
@command
def users_set_role(username: str, role: str) -> None:
    """Give USERNAME the role ROLE (viewer, operator or admin)."""
    from connecthub.db import users
    from connecthub.db.engine import session_scope

    chosen = _role(role)
    _prepare()
    with session_scope() as session:
        name = users.set_role(session, username, chosen, actor=_actor()).username
    typer.echo(f"{name} is now {chosen.value}")


@users_app.command("disable")
@command
def users_disable(username: str) -> None:
    """Stop USERNAME from logging in; their sessions and tokens stop working at once."""
    from connecthub.db import users
    from connecthub.db.engine import session_scope

    _prepare()
    with session_scope() as session:
        name = users.set_disabled(session, username, True, actor=_actor()).username
    typer.echo(f"disabled {name}")


@users_app.command("enable")
@command
def users_enable(username: str) -> None:
    """Let a disabled USERNAME log in again."""
    from connecthub.db import users
    from connecthub.db.engine import session_scope

    _prepare()
    with session_scope() as session:
        name = users.set_disabled(session, username, False, actor=_actor()).username
    typer.echo(f"enabled {name}")


@users_app.command("reset-password")
@command
def users_reset_password(
    username: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Set a new password (a generated one-time password unless --password-stdin)."""
    from connecthub.db import users
    from connecthub.db.engine import session_scope

    password, generated = _new_password(password_stdin)
    _prepare()
    with session_scope() as session:
        name = users.set_password(session, username, password, actor=_actor()).username
    typer.echo(f"password of {name} reset; their open sessions are ended")
    _say_password(name, password, generated)


@tokens_app.command("create")
@command
def tokens_create(
    user: Annotated[str, typer.Option("--user", help="The user the token acts as.")],
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime, e.g. 30d, 12h, 2w (none: never).")
    ] = None,
    name: Annotated[str, typer.Option("--name", help="What the token is for.")] = "",
) -> None:
    """Create an API token for USER and print it (the only time it is shown)."""
    from connecthub.db import tokens
    from connecthub.db.engine import session_scope

    lifetime = tokens.parse_duration(expires) if expires is not None else None
    _prepare()
    with session_scope() as session:
        row, token = tokens.create_token(session, user, actor=_actor(), name=name,
                                         expires_in=lifetime)
        token_id, until = row.id, row.expires_at
    shown = f"{until:%Y-%m-%d %H:%M} UTC" if until else "never"
    typer.echo(f"token #{token_id} for {user.strip().lower()}, expires {shown}; shown only now:",
               err=True)
    typer.echo(token)


@tokens_app.command("list")
@command
def tokens_list() -> None:
    """List the API tokens: user, state, expiry, last use (never the token)."""
    from connecthub.db import tokens
    from connecthub.db.engine import session_scope

    def when(moment: Any) -> str:
        return f"{moment:%Y-%m-%d %H:%M}" if moment else "-"

    _prepare()
    with session_scope() as session:
        rows = [(t.id, username, t.prefix, tokens.token_state(t), t.expires_at, t.last_used_at,
                 t.name) for t, username in tokens.list_tokens(session)]
    typer.echo(f"{'ID':<6} {'USER':<20} {'TOKEN':<12} {'STATE':<8} {'EXPIRES (UTC)':<17} "
               f"{'LAST USED (UTC)':<17} NAME")
    for token_id, username, prefix, state, expires_at, last_used, name in rows:
        typer.echo(f"{token_id:<6} {username:<20} {prefix + '...':<12} {state:<8} "
                   f"{when(expires_at):<17} {when(last_used):<17} {name}".rstrip())


@tokens_app.command("revoke")
@command
def tokens_revoke(token_id: Annotated[int, typer.Argument(help="The token's id.", min=1)]) -> None:
    """Revoke the API token TOKEN_ID: it stops working at once."""
    from connecthub.db import tokens
    from connecthub.db.engine import session_scope

    _prepare()
    with session_scope() as session:
        tokens.revoke_token(session, token_id, actor=_actor())
    typer.echo(f"revoked token #{token_id}")


@app.command("audit")
@command
def audit_trail(
    action: Annotated[str | None, typer.Option(help="Only this action, e.g. job.update.")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor, e.g. alice.")] = None,
    target: Annotated[str | None, typer.Option(help="Only this target, e.g. a job id.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only entries at or after this time (ISO 8601, UTC).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Show the audit trail, newest first: who changed what, when, from where; logins."""
    from datetime import UTC, datetime

    from connecthub.db import audit
    from connecthub.db.engine import session_scope

    start = None
    if since is not None:
        try:
            start = datetime.fromisoformat(since)
        except ValueError:
            raise CommandError(f"--since: '{since}' is not an ISO 8601 time") from None
        start = start if start.tzinfo else start.replace(tzinfo=UTC)
    if action is not None and action not in audit.ACTIONS:
        raise CommandError(f"--action: unknown action '{action}'; one of "
                           f"{', '.join(audit.ACTIONS)}")
    _prepare()
    with session_scope() as session:
        rows = [(e.id, e.at, e.actor, e.address, e.action, e.target, e.details)
                for e in audit.list_entries(session, action=action, actor=actor, target=target,
                                            since=start, limit=limit)]
    for entry_id, at, who, address, what, target_name, details in rows:
        if as_json:
            typer.echo(json.dumps({
                "id": entry_id, "at": at.isoformat(), "actor": who, "address": address,
                "action": what, "target": target_name, "details": details,
            }, default=str))
            continue
        shown = json.dumps(details, default=str) if details else ""
        typer.echo(f"#{entry_id:<6} {at:%Y-%m-%d %H:%M:%S} {who:<24} {address or '-':<15} "
                   f"{what:<20} {target_name or '-'} {shown}".rstrip())


@app.command("status")
@command
def status() -> None:
    """Print ConnectHub's health; exit 1 when something is unhealthy (for cron or a probe)."""
    from deployments.health import snapshot

    _prepare()
    health = snapshot()
    for line in _health_lines(health):
        typer.echo(line)
    if health.problems:
        raise typer.Exit(1)


def _health_lines(health: Any) -> list[str]:
    """What the dashboard shows, as text."""
    workers = ", ".join(
        f"{worker.name} ({'online' if worker.online else 'offline'})" for worker in health.workers
    )
    last_pass = f"{health.last_pass_at:%Y-%m-%d %H:%M:%S} UTC" if health.last_pass_at else "never"
    lines = [
        f"workers online:   {health.workers_online} of {len(health.workers)} on pool "
        f"{health.pool}" + (f": {workers}" if workers else ""),
        f"failing jobs:     {len(health.failing_jobs)}",
        *(f"  {job.job_id} {job.status} (JobLog #{job.log_id}) {job.error}".rstrip()
          for job in health.failing_jobs),
        f"late runs:        {len(health.late_runs)}",
        *(f"  {run.job_id} flow run {run.flow_run_id} due {run.expected_start:%H:%M:%S}"
          for run in health.late_runs),
        f"last sync pass:   {last_pass}"
        + (f" (error: {health.last_pass_error})" if health.last_pass_error else ""),
        f"failing alerts:   {len(health.failing_deliveries)}",
        *(f"  #{d.id} {d.kind} to {d.channel}: {d.last_error}"
          for d in health.failing_deliveries),
        f"runs, last 24 h:  {sum(bucket.total for bucket in health.runs_per_hour)}",
    ]
    problems = health.problems
    lines.append("status:           " + ("UNHEALTHY" if problems else "healthy"))
    lines.extend(f"  - {problem}" for problem in problems)
    return lines


@app.command("prune")
@command
def prune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be pruned; delete nothing.")
    ] = False,
) -> None:
    """Delete the JobLog rows, alert deliveries and Prefect flow runs past retention."""
    from connecthub.db.retention import prune as prune_history
    from deployments.client import PrefectUnavailableError
    from deployments.retention import prune_flow_runs

    _prepare()
    report = prune_history(dry_run=dry_run)
    verb = "would prune" if dry_run else "pruned"
    typer.echo(
        f"{verb} {report.joblog_expired} JobLog row(s) older than {report.horizon:%Y-%m-%d %H:%M} "
        f"UTC, {report.joblog_over_cap} over the per-job cap, {report.deliveries} alert "
        "deliveries"
    )
    try:
        flow_runs = prune_flow_runs(report.horizon, dry_run=dry_run)
    except PrefectUnavailableError as error:
        raise CommandError(f"Prefect's flow runs were not pruned: {error}") from None
    typer.echo(f"{verb} {flow_runs} Prefect flow run(s) that ended before the horizon")


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
    from connecthub.app.job_changes import record_run
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
    record_run(_actor(), job_id, log.id, params=override is not None)
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
    from connecthub.app.job_changes import record_retry
    from deployments.runs import retry as start_retry

    _prepare()
    use = "current" if current else "snapshot"
    log = start_retry(log_id, use)
    record_retry(_actor(), log_id, use, log.id)
    _print_outcome(log.id, wait, timeout)


@app.command("worker")
@command
def worker(
    limit: Annotated[
        int | None, typer.Option(help="Most flow runs this worker runs at once.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Worker name shown in Prefect.")] = None,
) -> None:
    """Start a Prefect process worker on the ConnectHub work pool, with its fork server."""
    from deployments.worker import run_worker

    _prepare()
    if not get_settings().prefect_api_url:
        raise CommandError("PREFECT_API_URL is not set: the worker needs a Prefect server")
    sys.stdout.flush()
    raise typer.Exit(run_worker(limit, name))


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
    prefect_port: Annotated[
        int, typer.Option(help="Port of the local Prefect server.")
    ] = DEFAULT_PREFECT_PORT,
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
