"""Index lower(id) and lower(name) of Job, for the admin's prefix search.

On PostgreSQL the indexes use `text_pattern_ops`, so that `lower(col) LIKE 'prefix%'` is an index
range scan under any collation; SQLite uses a plain index on the expression for
`lower(col) GLOB 'prefix*'`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

INDEXES = {"ix_job_id_prefix": "id", "ix_job_name_prefix": "name"}


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for index, column in INDEXES.items():
        opclass = " text_pattern_ops" if postgresql else ""
        op.execute(f"CREATE INDEX {index} ON job (lower({column}){opclass})")


def downgrade() -> None:
    for index in INDEXES:
        op.drop_index(index, table_name="job")
