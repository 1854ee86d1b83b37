"""Index JobLog by job and status together, for the admin's combined filter.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_job_log_job_id_status_id", "job_log", ["job_id", "status", "id"])


def downgrade() -> None:
    op.drop_index("ix_job_log_job_id_status_id", table_name="job_log")
