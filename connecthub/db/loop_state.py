"""The `loop_state` table: what each background loop last did, one row per loop name.

The sync/reconcile loop records each pass (when it started and finished, and the error of a
failed pass) for the dashboard and `connecthub status`; the alert evaluation keeps its JobLog
cursor here. Every write is one upsert, so any number of loops may write the same row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from connecthub.db.models import LoopState

SYNC_LOOP = "sync-reconcile"
ALERTS_CURSOR = "alerts"


def write(session: Session, name: str, **values: Any) -> None:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(LoopState).values(name=name, **values)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["name"], set_={key: statement.excluded[key] for key in values}
        )
    )


def record_pass(
    session: Session, started_at: datetime, finished_at: datetime, error: str | None
) -> None:
    write(session, SYNC_LOOP, started_at=started_at, finished_at=finished_at, error=error)


def read(session: Session, name: str) -> LoopState | None:
    return session.get(LoopState, name)
