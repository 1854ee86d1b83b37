"""ConnectHub's tables.

Job is an integration job's configuration and its sync state with Prefect; `secret_cfg` holds
only a Fernet token. JobLog is one row per attempt of a flow run, unique on
(flow_run_id, attempt), so writing an attempt twice updates it instead of duplicating it.
JobLog keeps `job_id` as a plain column, not a foreign key: the history of a deleted job stays.
AlertChannel holds a channel's apprise URL only as a Fernet token; AlertDelivery is one alert to
one channel, unique on (channel, event_key); LoopState is what each background loop last did.
User is a person who logs in, with a role and an argon2 hash of the password; LoginFailure
counts failed logins per throttle key, so every admin replica sees the same counts. ApiToken is
a user's API token, stored only as its SHA-256. AuditEntry is one change or login, append-only.
The Job columns carry no defaults: `JobSpec` is the one place that says what a field defaults
to, and a column default would also replace a None the operator chose (SQLAlchemy fires it for
an attribute left at None on INSERT).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from connecthub.jobs.vocabulary import RunStatus, Trigger


def utcnow() -> datetime:
    return datetime.now(UTC)


# An id column that is BIGINT on PostgreSQL and the rowid alias on SQLite.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON(none_as_null=True), datetime: UTCDateTime()}


class Job(Base):
    __tablename__ = "job"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    cron_expr: Mapped[str] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64))
    handler_path: Mapped[str] = mapped_column(String(300))
    public_cfg: Mapped[dict[str, Any]] = mapped_column(JSON)
    secret_cfg: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean)
    timeout_seconds: Mapped[int | None] = mapped_column(Integer)
    max_retries: Mapped[int] = mapped_column(Integer)
    retry_delay_seconds: Mapped[int] = mapped_column(Integer)
    concurrency_limit: Mapped[int | None] = mapped_column(Integer)
    collision_strategy: Mapped[str] = mapped_column(String(16))
    tags: Mapped[list[str]] = mapped_column(JSON)
    # Server defaults for rows written without these columns (migration 0005), never for None.
    alerts: Mapped[list[str]] = mapped_column(JSON, server_default="[]")
    alert_after_failures: Mapped[int] = mapped_column(Integer, server_default="1")
    alert_every_failure: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # NULL: the global JOBLOG_MAX_ROWS_PER_JOB applies (`db.retention`).
    max_log_rows: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    deployment_id: Mapped[str | None] = mapped_column(String(36))
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sync_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_job_name", "name"),)

    def __str__(self) -> str:
        return self.id


# The admin's search is a case-insensitive prefix match on id and name (migration 0003);
# on PostgreSQL, text_pattern_ops lets LIKE 'prefix%' use these indexes under any collation.
Index(
    "ix_job_id_prefix",
    func.lower(Job.id).label("lower_id"),
    postgresql_ops={"lower_id": "text_pattern_ops"},
)
Index(
    "ix_job_name_prefix",
    func.lower(Job.name).label("lower_name"),
    postgresql_ops={"lower_name": "text_pattern_ops"},
)


class JobLog(Base):
    __tablename__ = "job_log"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.PENDING.value)
    trigger: Mapped[str] = mapped_column(String(16), default=Trigger.MANUAL.value)
    flow_run_id: Mapped[str | None] = mapped_column(String(36))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    retry_of: Mapped[int | None] = mapped_column(
        BigIntId, ForeignKey("job_log.id", ondelete="SET NULL")
    )
    snapshot_params: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    result: Mapped[Any | None] = mapped_column(JSON(none_as_null=True))
    error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    duration_ms: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        UniqueConstraint("flow_run_id", "attempt", name="uq_job_log_flow_run_attempt"),
        Index("ix_job_log_job_id_id", "job_id", "id"),
        Index("ix_job_log_status_id", "status", "id"),
        Index("ix_job_log_job_id_status_id", "job_id", "status", "id"),
        Index("ix_job_log_job_id_started_at", "job_id", "started_at"),
        # Retention deletes by age; deleting a row looks up the rows that retry it.
        Index("ix_job_log_created_at", "created_at"),
        Index("ix_job_log_retry_of", "retry_of"),
    )

    def __str__(self) -> str:
        return f"#{self.id} {self.job_id} {self.status}"


class AlertChannel(Base):
    """A named apprise URL; `url_token` is the Fernet token of {"url": ...} (it holds secrets)."""

    __tablename__ = "alert_channel"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    url_token: Mapped[str] = mapped_column(Text)
    # What the list shows: the URL as apprise prints it with its secrets hidden.
    masked_url: Mapped[str] = mapped_column(String(500))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    def __str__(self) -> str:
        return self.name


class AlertDelivery(Base):
    """One alert to one channel, unique on (channel, event_key): an event is sent once."""

    __tablename__ = "alert_delivery"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(100))
    event_key: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[str | None] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("channel", "event_key", name="uq_alert_delivery_channel_event"),
        Index("ix_alert_delivery_status_next", "status", "next_attempt_at"),
        Index("ix_alert_delivery_created_at", "created_at"),
    )

    def __str__(self) -> str:
        return f"#{self.id} {self.kind} -> {self.channel}"


class LoopState(Base):
    """What a background loop last did, one row per loop name: its last pass and its cursor."""

    __tablename__ = "loop_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    # The alert evaluation's high-water mark: every JobLog id at or below it was final.
    cursor: Mapped[int | None] = mapped_column(BigInteger)


class User(Base):
    """A person who logs in: a lower-case username, a role (`security.roles`), an argon2 hash."""

    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(300))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # A session started before this moment is no longer valid (password reset, disabled).
    sessions_valid_after: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __str__(self) -> str:
        return self.username


class LoginFailure(Base):
    """Failed logins under one throttle key ("pair:<address> <username>" or "address:<address>")."""

    __tablename__ = "login_failure"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    # Seconds since the epoch of the last failure (wall clock: replicas compare it).
    last_failure: Mapped[float] = mapped_column(Float)


class ApiToken(Base):
    """An API token of a user: only the SHA-256 of the token is stored (`db.tokens`)."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("app_user.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The token's first characters, so an operator can tell their tokens apart.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_api_token_user_id", "user_id"),)

    def __str__(self) -> str:
        return f"#{self.id} {self.prefix}…"


class AuditEntry(Base):
    """One change or login: who (a user, a token's user, the CLI), when, from where, what.

    Append-only: nothing in ConnectHub updates or deletes a row, and the database refuses it
    (triggers of migration 0009).
    """

    __tablename__ = "audit_entry"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(300))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))

    __table_args__ = (
        Index("ix_audit_entry_at", "at"),
        Index("ix_audit_entry_action_id", "action", "id"),
        Index("ix_audit_entry_target_id", "target", "id"),
        Index("ix_audit_entry_actor_id", "actor", "id"),
    )

    def __str__(self) -> str:
        return f"#{self.id} {self.action} {self.target or ''}".rstrip()
