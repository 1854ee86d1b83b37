"""The audit trail: who changed what, when and from where, and every login.

`record` appends one `AuditEntry` in the caller's transaction, so a change and its entry are
written together or not at all. `Actor` is who: a user (`alice`), a user through an API token
(`alice (token #3)`), or the command line (`cli:<os user>`), with the client address.
`job_changes` is the field-level diff of a job: each changed field as `{"from": ..., "to": ...}`,
and a secret only as "changed", never its value (not even encrypted). Entries hold no secret:
alert channels by name, tokens by id, passwords never. `ACTIONS` lists what is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connecthub.db.models import AuditEntry, Job, utcnow
from connecthub.jobs.spec import EXPORTED_FIELDS

SECRET_CHANGED = "changed"
ACTIONS = (
    "job.create", "job.update", "job.delete", "job.enable", "job.disable", "job.run",
    "joblog.retry", "alert_channel.add", "alert_channel.delete", "user.create", "user.role",
    "user.disable", "user.enable", "user.password", "token.create", "token.revoke",
    "key.rotate", "key.retire", "login.success", "login.failure",
)


@dataclass(frozen=True)
class Actor:
    name: str
    address: str | None = None


def record(
    session: Session, actor: Actor, action: str, target: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    if action not in ACTIONS:  # a new kind of entry is listed (and so filterable) first
        raise ValueError(f"unknown audit action {action!r}")
    entry = AuditEntry(
        at=utcnow(), actor=actor.name[:200],
        address=actor.address[:100] if actor.address else None, action=action,
        target=target[:300] if target else None, details=details or None,
    )
    session.add(entry)
    session.flush()
    return entry


def job_state(job: Job | None) -> dict[str, Any] | None:
    """What the diff compares: the exported fields and the secrets' Fernet token."""
    if job is None:
        return None
    state = {field: getattr(job, field) for field in EXPORTED_FIELDS}
    state["secret_cfg"] = job.secret_cfg
    return state


def job_changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """{field: {"from": old, "to": new}} of what differs; the secrets only as "changed"."""
    fields = (after or before or {}).keys()
    changes: dict[str, Any] = {}
    for field in fields:
        old = (before or {}).get(field)
        new = (after or {}).get(field)
        if old == new:
            continue
        if field == "secret_cfg":
            changes[field] = SECRET_CHANGED
        else:
            changes[field] = {"from": _plain(old), "to": _plain(new)}
    return changes


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


def record_job_change(
    session: Session, actor: Actor, action: str, job_id: str,
    before: dict[str, Any] | None, after: dict[str, Any] | None,
) -> AuditEntry | None:
    """The entry of a job's create, update or delete (none for an update that changed nothing)."""
    changes = job_changes(before, after)
    if action == "job.update" and not changes:
        return None
    return record(session, actor, action, job_id, {"changes": changes} if changes else None)


def list_entries(
    session: Session, *, action: str | None = None, actor: str | None = None,
    target: str | None = None, since: datetime | None = None, until: datetime | None = None,
    cursor: int | None = None, limit: int = 50,
) -> list[AuditEntry]:
    """Newest first; `cursor`: only entries older than that id."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if action:
        query = query.where(AuditEntry.action == action)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if target:
        query = query.where(AuditEntry.target == target)
    if since:
        query = query.where(AuditEntry.at >= since)
    if until:
        query = query.where(AuditEntry.at < until)
    if cursor:
        query = query.where(AuditEntry.id < cursor)
    return list(session.scalars(query))
