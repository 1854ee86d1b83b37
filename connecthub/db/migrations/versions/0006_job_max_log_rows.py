"""A job's own cap on its JobLog rows (`job.max_log_rows`; NULL: JOBLOG_MAX_ROWS_PER_JOB).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column without a default: existing jobs keep following the global setting.
    op.add_column("job", sa.Column("max_log_rows", sa.Integer(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN, as in 0005: a batch copy of `job` would lose 0003's expression indexes.
    op.drop_column("job", "max_log_rows")
