"""What every ConnectHub entry point does before it starts work.

`prepare()` configures logging, creates an empty database at the current schema, refuses a
database whose schema is not current, and refuses to go on when encrypted secrets exist that
the key file cannot read (fail closed); it creates the key file only when there is nothing
encrypted yet.
"""

from __future__ import annotations

from connecthub.core.config import get_settings
from connecthub.core.logging import configure_logging
from connecthub.db import crud
from connecthub.db.engine import get_engine, session_scope
from connecthub.db.migrate import check_schema, create_if_empty
from connecthub.security.fernet import check_key_usable


def prepare(*, check_key: bool = True) -> None:
    settings = get_settings()
    configure_logging(log_dir=settings.log_dir)
    create_if_empty(get_engine())
    check_schema(get_engine())
    if check_key:
        with session_scope() as session:
            check_key_usable(crud.secret_tokens(session))
