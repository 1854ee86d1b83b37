"""Alembic environment: runs ConnectHub's migrations on the connection it is handed."""

from alembic import context

from connecthub.db.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
