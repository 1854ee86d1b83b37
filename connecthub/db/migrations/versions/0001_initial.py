"""Job and JobLog.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _job_id_check() -> str:
    if op.get_bind().dialect.name == "postgresql":
        return "id ~ '^[A-Za-z0-9._-]{1,200}$'"
    return "length(id) BETWEEN 1 AND 200 AND id NOT GLOB '*[^A-Za-z0-9._-]*'"


def upgrade() -> None:
    op.create_table(
        "job",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("cron_expr", sa.String(120), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("handler_path", sa.String(300), nullable=False),
        sa.Column("public_cfg", sa.JSON(), nullable=False),
        sa.Column("secret_cfg", sa.Text()),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("timeout_seconds", sa.Integer()),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("retry_delay_seconds", sa.Integer(), nullable=False),
        sa.Column("concurrency_limit", sa.Integer()),
        sa.Column("collision_strategy", sa.String(16), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deployment_id", sa.String(36)),
        sa.Column("synced_at", sa.DateTime(timezone=True)),
        sa.Column("sync_error", sa.Text()),
        sa.CheckConstraint(_job_id_check(), name="ck_job_id_pattern"),
        sa.CheckConstraint("max_retries >= 0", name="ck_job_max_retries"),
        sa.CheckConstraint("retry_delay_seconds >= 0", name="ck_job_retry_delay"),
        sa.CheckConstraint(
            "timeout_seconds IS NULL OR timeout_seconds > 0", name="ck_job_timeout"
        ),
        sa.CheckConstraint(
            "concurrency_limit IS NULL OR concurrency_limit > 0", name="ck_job_concurrency"
        ),
    )
    op.create_index("ix_job_name", "job", ["name"])
    op.create_table(
        "job_log",
        sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("flow_run_id", sa.String(36)),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("retry_of", BigIntId, sa.ForeignKey("job_log.id", ondelete="SET NULL")),
        sa.Column("snapshot_params", sa.JSON()),
        sa.Column("result", sa.JSON()),
        sa.Column("error", sa.Text()),
        sa.Column("traceback", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("duration_ms", sa.Integer()),
        sa.UniqueConstraint("flow_run_id", "attempt", name="uq_job_log_flow_run_attempt"),
        sa.CheckConstraint(
            "status IN ('PENDING','RUNNING','SUCCESS','FAILED','CRASHED','CANCELLED')",
            name="ck_job_log_status",
        ),
        sa.CheckConstraint(
            "\"trigger\" IN ('schedule','manual','retry','prefect-retry')",
            name="ck_job_log_trigger",
        ),
    )
    op.create_index("ix_job_log_job_id_id", "job_log", ["job_id", "id"])
    op.create_index("ix_job_log_status_id", "job_log", ["status", "id"])
    op.create_index("ix_job_log_job_id_started_at", "job_log", ["job_id", "started_at"])


def downgrade() -> None:
    op.drop_table("job_log")
    op.drop_table("job")
