"""The alert outbox: one `alert_delivery` row per (channel, event key), then its sending.

`enqueue` inserts an event's rows with ON CONFLICT DO NOTHING on the unique key, so two loops
that see the same event, or one loop seeing it again after a restart, add nothing twice.
`deliver_due` claims each due row with a conditional UPDATE (only one loop wins it, for
`CLAIM_SECONDS`), sends it, and records SENT, or the masked error and the next attempt after a
backoff (`BACKOFF_SECONDS`), or FAILED after `MAX_ATTEMPTS`. A loop that dies mid-delivery leaves
its claim to expire, and the row is sent by the next pass.
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from connecthub.alerts.channels import channel_url, send
from connecthub.alerts.messages import AlertEvent
from connecthub.db.engine import session_scope
from connecthub.db.models import AlertChannel, AlertDelivery, utcnow

logger = logging.getLogger("connecthub.alerts")

# Seconds to wait after failed attempt 1, 2, ...; the last value repeats.
BACKOFF_SECONDS = (10, 30, 120, 600, 1800, 3600)
MAX_ATTEMPTS = 8
CLAIM_SECONDS = 120


class DeliveryStatus(enum.StrEnum):
    PENDING = "PENDING"
    SENT = "SENT"
    FAILED = "FAILED"  # given up after MAX_ATTEMPTS, or its channel is gone


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=BACKOFF_SECONDS[min(attempts, len(BACKOFF_SECONDS)) - 1])


def enqueue(session: Session, event: AlertEvent, channels: list[str]) -> int:
    """Add a delivery of `event` to each channel that does not have it yet; how many added."""
    if not channels:
        return 0
    now = utcnow()
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(AlertDelivery).values([
        {
            "channel": channel, "event_key": event.key, "kind": event.kind.value,
            "job_id": event.job_id, "title": event.title, "body": event.body,
            "status": DeliveryStatus.PENDING.value, "attempts": 0, "next_attempt_at": now,
            "created_at": now,
        }
        for channel in channels
    ]).on_conflict_do_nothing(index_elements=["channel", "event_key"])
    return session.execute(statement).rowcount or 0


def _claim(delivery_id: int, now: datetime) -> AlertDelivery | None:
    with session_scope() as session:
        won = session.execute(
            update(AlertDelivery)
            .where(
                AlertDelivery.id == delivery_id,
                AlertDelivery.status == DeliveryStatus.PENDING.value,
                AlertDelivery.next_attempt_at <= now,
            )
            .values(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS))
        ).rowcount
        return session.get(AlertDelivery, delivery_id) if won else None


def _deliver(delivery: AlertDelivery) -> tuple[str | None, bool]:
    """(None, _) once sent, else (why not, whether retrying is pointless)."""
    with session_scope() as session:
        channel = session.get(AlertChannel, delivery.channel)
        url = channel_url(channel) if channel is not None else None
    if url is None:
        return f"the channel '{delivery.channel}' no longer exists", True
    return send(url, delivery.title, delivery.body), False


def deliver_due(limit: int = 100) -> tuple[int, int]:
    """Send the deliveries that are due; (sent, failed attempts)."""
    now = utcnow()
    with session_scope() as session:
        due = list(session.scalars(
            select(AlertDelivery.id)
            .where(
                AlertDelivery.status == DeliveryStatus.PENDING.value,
                AlertDelivery.next_attempt_at <= now,
            )
            .order_by(AlertDelivery.id)
            .limit(limit)
        ))
    sent = failed = 0
    for delivery_id in due:
        delivery = _claim(delivery_id, now)
        if delivery is None:
            continue  # another loop is sending it
        error, permanent = _deliver(delivery)
        attempts = delivery.attempts + 1
        values: dict[str, object] = {"attempts": attempts, "last_error": error}
        if error is None:
            values.update(status=DeliveryStatus.SENT.value, sent_at=utcnow())
            sent += 1
        else:
            gave_up = permanent or attempts >= MAX_ATTEMPTS
            values.update(
                status=(DeliveryStatus.FAILED if gave_up else DeliveryStatus.PENDING).value,
                next_attempt_at=utcnow() + backoff(attempts),
            )
            failed += 1
            logger.warning(
                "alert %s to channel %s failed (attempt %d): %s",
                delivery.event_key, delivery.channel, attempts, error,
            )
        with session_scope() as session:
            session.execute(
                update(AlertDelivery).where(AlertDelivery.id == delivery_id).values(**values)
            )
    return sent, failed


def failing_deliveries(session: Session, limit: int = 20) -> list[AlertDelivery]:
    """Deliveries given up, or still retrying after a failed attempt; newest first."""
    return list(session.scalars(
        select(AlertDelivery)
        .where(or_(
            AlertDelivery.status == DeliveryStatus.FAILED.value,
            (AlertDelivery.status == DeliveryStatus.PENDING.value)
            & (AlertDelivery.attempts > 0),
        ))
        .order_by(AlertDelivery.id.desc())
        .limit(limit)
    ))
