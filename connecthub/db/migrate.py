"""Applying and checking ConnectHub's Alembic migrations (shipped in this package).

An empty database (or an absent SQLite file) is created at head on first use
(`create_if_empty`); a database at an older schema is only ever upgraded on request
(`connecthub db upgrade`), since an upgrade may need a backup first.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import SQLAlchemyError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class SchemaOutdatedError(RuntimeError):
    """The database is not at the schema this code expects."""


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_schema(engine: Engine) -> None:
    """Raise `SchemaOutdatedError` with what to run when the database is not at head."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaOutdatedError(
            f"The database {engine.url.render_as_string(hide_password=True)} is at schema "
            f"{current or 'none'}, this ConnectHub needs {head}: run `connecthub db upgrade`."
        )


def create_if_empty(engine: Engine) -> bool:
    """Migrate a database that has no tables at all to head; True if it did."""
    if current_revision(engine) is not None or inspect(engine).get_table_names():
        return False
    try:
        upgrade(engine)
    except SQLAlchemyError:
        # Another process created it at the same moment: fine if it is now at head.
        if current_revision(engine) != head_revision():
            raise
    return True
