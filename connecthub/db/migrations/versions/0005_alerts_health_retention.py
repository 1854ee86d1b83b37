"""Alerts, health and retention: the job's alert fields, alert channels and deliveries, the
loops' state, and the JobLog indexes retention deletes by.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, not batch mode: SQLite adds a NOT NULL column with a constant default
    # in place, and a batch copy of `job` would lose the expression indexes of migration 0003.
    # The server defaults fill the existing rows; what a saved job gets is JobSpec's to say.
    op.add_column("job", sa.Column("alerts", sa.JSON(), nullable=False, server_default="[]"))
    op.add_column(
        "job", sa.Column("alert_after_failures", sa.Integer(), nullable=False, server_default="1")
    )
    op.add_column(
        "job",
        sa.Column("alert_every_failure", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_job_log_created_at", "job_log", ["created_at"])
    op.create_index("ix_job_log_retry_of", "job_log", ["retry_of"])
    op.create_table(
        "alert_channel",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("url_token", sa.Text(), nullable=False),
        sa.Column("masked_url", sa.String(500), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "alert_delivery",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("event_key", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("job_id", sa.String(200)),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("channel", "event_key", name="uq_alert_delivery_channel_event"),
    )
    op.create_index(
        "ix_alert_delivery_status_next", "alert_delivery", ["status", "next_attempt_at"]
    )
    op.create_index("ix_alert_delivery_created_at", "alert_delivery", ["created_at"])
    op.create_table(
        "loop_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("error", sa.Text()),
        sa.Column("cursor", sa.BigInteger()),
    )


def downgrade() -> None:
    op.drop_table("loop_state")
    op.drop_table("alert_delivery")
    op.drop_table("alert_channel")
    op.drop_index("ix_job_log_retry_of", table_name="job_log")
    op.drop_index("ix_job_log_created_at", table_name="job_log")
    for column in ("alert_every_failure", "alert_after_failures", "alerts"):
        op.drop_column("job", column)
