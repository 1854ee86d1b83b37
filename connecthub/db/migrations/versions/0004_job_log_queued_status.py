"""JobLog status QUEUED: a run Prefect holds until its job's concurrency limit frees a slot.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BEFORE = "'PENDING','RUNNING','SUCCESS','FAILED','CRASHED','CANCELLED'"
AFTER = "'PENDING','QUEUED','RUNNING','SUCCESS','FAILED','CRASHED','CANCELLED'"


def _status_check(statuses: str) -> None:
    # SQLite cannot alter a constraint: batch mode copies the table with the new one.
    with op.batch_alter_table("job_log") as batch:
        batch.drop_constraint("ck_job_log_status", type_="check")
        batch.create_check_constraint("ck_job_log_status", f"status IN ({statuses})")


def upgrade() -> None:
    _status_check(AFTER)


def downgrade() -> None:
    op.execute("UPDATE job_log SET status = 'PENDING' WHERE status = 'QUEUED'")
    _status_check(BEFORE)
