"""/audit: the audit trail, newest first, filtered by action, actor, target and time, paged by
cursor (admins only: it names who logged in from where)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from connecthub.app.api.deps import Admin
from connecthub.db import audit
from connecthub.db.engine import session_scope

router = APIRouter(prefix="/audit", tags=["audit"])


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    address: str | None
    action: str
    target: str | None
    details: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next (older) page.")


def _page(limit: int, **filters: Any) -> AuditPage:
    with session_scope() as session:
        rows = audit.list_entries(session, limit=limit + 1, **filters)
        items = [AuditOut(**{name: getattr(row, name) for name in AuditOut.model_fields})
                 for row in rows[:limit]]
    return AuditPage(items=items, next_cursor=items[-1].id if len(rows) > limit else None)


def _clean(value: str | None) -> str | None:
    return value.replace("\x00", "") if value else None


@router.get("", response_model=AuditPage, summary="The audit trail, newest first")
async def list_audit(
    _user: Admin,
    action: Annotated[str | None, Query(max_length=32, description="e.g. job.update")] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    target: Annotated[str | None, Query(max_length=300, description="e.g. a job id")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AuditPage:
    return await run_in_threadpool(
        _page, limit, action=_clean(action), actor=_clean(actor), target=_clean(target),
        since=since, until=until, cursor=cursor,
    )
