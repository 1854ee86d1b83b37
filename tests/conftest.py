"""Shared fixtures: a PostgreSQL database for the session, per-test settings, and the engine.

Every test that touches ConnectHub's database gets a migrated database through `pg_env`
(PostgreSQL, tables emptied after each test) or `sqlite_env` (a fresh file). The engine fixtures
(`prefect_server`, `worker`) start a real `prefect server start` on PostgreSQL and a real
`connecthub worker` once per session; see tests/engine.py.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from connecthub.core.config import get_settings
from connecthub.db.engine import get_engine, reset_engine
from connecthub.db.migrate import upgrade

PG_ADMIN_URL = os.environ.get("CONNECTHUB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_url(database: str, driver: str = "psycopg") -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", f"postgresql+{driver}://")
    return f"{base}/{database}"


def create_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def captured_loggers(caplog: pytest.LogCaptureFixture, *names: str) -> Iterator[None]:
    """Send every record of the named loggers to `caplog`, even where they don't propagate."""
    loggers = [logging.getLogger(name) for name in names]
    saved = [(logger, logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        # Not propagating, so the root's caplog handler does not see each record twice.
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        logger.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        for logger, level, propagate in saved:
            logger.removeHandler(caplog.handler)
            logger.setLevel(level)
            logger.propagate = propagate


def use_settings(monkeypatch: pytest.MonkeyPatch | None, **env: str) -> None:
    """Point ConnectHub at `env` (in os.environ, so child processes inherit it)."""
    for key, value in env.items():
        if monkeypatch is None:
            os.environ[key] = value
        else:
            monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    reset_engine()


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("connecthub")


@pytest.fixture(scope="session")
def pg_database(session_dir: Path) -> Iterator[str]:
    """A migrated PostgreSQL database and a data dir, set in os.environ for the whole session."""
    name = f"connecthub_test_{os.getpid()}"
    create_pg_database(name)
    data_dir = session_dir / "data"
    use_settings(
        None,
        DATA_DIR=str(data_dir),
        DB_URL=_pg_url(name),
        FERNET_KEY_PATH=str(data_dir / "fernet.key"),
        ADMIN_USERNAME="admin",
        ADMIN_PASSWORD="test-admin-password",
        SESSION_SECRET="test-session-secret-0123456789abcdef",
    )
    upgrade(get_engine())
    yield name
    reset_engine()
    drop_pg_database(name)


def _session_env() -> dict[str, str]:
    keys = ("DATA_DIR", "DB_URL", "FERNET_KEY_PATH")
    return {key: os.environ[key] for key in keys}


@pytest.fixture
def pg_env(pg_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The session's PostgreSQL database, emptied after the test."""
    use_settings(monkeypatch, **_session_env())
    yield
    with get_engine().begin() as conn:
        conn.execute(text("TRUNCATE job_log, job RESTART IDENTITY"))
    monkeypatch.undo()
    use_settings(None, **_session_env())


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh migrated SQLite database and data dir ; yields the data dir."""
    data_dir = tmp_path / "data"
    use_settings(
        monkeypatch,
        DATA_DIR=str(data_dir),
        DB_URL=f"sqlite:///{data_dir / 'connecthub.db'}",
        FERNET_KEY_PATH=str(data_dir / "fernet.key"),
    )
    upgrade(get_engine())
    yield data_dir
    reset_engine()
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture(params=["postgresql", "sqlite"])
def any_db(request: pytest.FixtureRequest) -> None:
    """Runs the test once on PostgreSQL and once on SQLite."""
    request.getfixturevalue("pg_env" if request.param == "postgresql" else "sqlite_env")


pytest_plugins = ["tests.engine"]
