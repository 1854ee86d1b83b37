"""Named locks shared by every ConnectHub process on one database.

`named_lock(name)` holds a lock that only one process (or thread) at a time can hold for that
name, whichever ConnectHub process asks: the admin, the API, the CLI, the sync loop. On
PostgreSQL it is a transaction-level advisory lock (`pg_advisory_xact_lock` on a 64-bit hash of
the name), so processes on other hosts wait too; on a SQLite file it is an `flock` on a file
beside the database (`<database>.locks/<hash>`), as SQLite is one host's anyway. An in-memory
SQLite database is one process's, and a lock held in it would block nobody else: none is taken.

Why: some writes to Prefect are read-then-write and cannot be made atomic on Prefect's side.
Creating a deployment is an upsert that replaces its schedules, so two processes that both saw
no deployment for a new job and both created it leave runs of the first schedule that the
scheduler made meanwhile beside those of the second: every slot of that job runs twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from connecthub.core.config import get_settings
from connecthub.db.engine import get_engine, sqlite_path


def _key(name: str) -> int:
    """A signed 64-bit key for `name` (PostgreSQL's advisory lock keys are bigint)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def named_lock(name: str) -> Iterator[None]:
    """Hold the lock `name` for the block, waiting for whoever holds it."""
    url = get_settings().database_url
    if not url.startswith("sqlite"):
        with get_engine().begin() as connection:  # released when this transaction ends
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _key(name)})
            yield
        return
    path = sqlite_path(url)
    if path is None:
        yield
        return
    directory = path.with_name(f"{path.name}.locks")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / f"{_key(name) & 0xFFFFFFFFFFFFFFFF:016x}", os.O_RDWR | os.O_CREAT,
                 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the file releases the lock
