"""The PostgreSQL server of the tests and benchmarks: its URL, database URLs, create and drop.

CONNECTHUB_TEST_PG is the admin URL of the server (default: postgres on 127.0.0.1:5432); every
database URL here derives from it.
"""

from __future__ import annotations

import os

import psycopg

PG_ADMIN_URL = os.environ.get("CONNECTHUB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def pg_url(database: str, driver: str = "psycopg") -> str:
    """The SQLAlchemy URL of `database` on the PG_ADMIN_URL server, with `driver`."""
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", f"postgresql+{driver}://")
    return f"{base}/{database}"


def prefect_database_name() -> str:
    """The name of the test session's Prefect database (tests/engine.py's `prefect_server`)."""
    return f"prefect_test_{os.getpid()}"


def create_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
