"""Shared fixtures: a PostgreSQL database for the session, per-test settings, and the engine.

Every test that touches ConnectHub's database gets a migrated database through `pg_env`
(PostgreSQL, tables emptied after each test) or `sqlite_env` (a fresh file). The engine fixtures
(`prefect_server`, `worker`) start a real `prefect server start` on PostgreSQL and a real
`connecthub worker` once per session; see tests/engine.py. The admin fixtures (`prefect_down`,
`anonymous`, `client`, `admin`) give an in-process admin app with Prefect unreachable.

The helpers these fixtures and the test modules share (with the benchmarks too) are in
tests/support; test modules never import each other.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from connecthub.core.config import get_settings
from connecthub.db import crud
from connecthub.db.engine import get_engine, reset_engine, session_scope
from connecthub.db.migrate import upgrade
from tests.support.admin import SECRET_VALUE, RecordingClient, login
from tests.support.browser import chromium
from tests.support.cli import Cli
from tests.support.pg import create_pg_database, drop_pg_database, pg_url
from tests.support.processes import free_port
from tests.support.settings import use_settings


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
        DB_URL=pg_url(name),
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
        conn.execute(text(
            "TRUNCATE job_log, job, alert_channel, alert_delivery, loop_state, api_token, "
            "audit_entry, "
            "app_user, login_failure RESTART IDENTITY"
        ))
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


# --- the admin over HTTP, Prefect unreachable ------------------------------------------------


@pytest.fixture
def prefect_down(pg_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    monkeypatch.delenv("PREFECT_UI_URL", raising=False)
    get_settings.cache_clear()


@pytest.fixture
def anonymous(prefect_down: None) -> Iterator[RecordingClient]:
    """A client of a freshly started app, not logged in; checks no response leaked a secret."""
    from connecthub.app.main import create_app  # here, so that only the admin's tests import it

    with RecordingClient(create_app(), follow_redirects=False) as client:
        yield client
        with session_scope() as session:
            tokens = crud.secret_tokens(session)
        for body in client.bodies:
            assert SECRET_VALUE not in body
            for token in tokens:
                assert token not in body


@pytest.fixture
def client(anonymous: RecordingClient) -> RecordingClient:
    login(anonymous)
    return anonymous


@pytest.fixture
def admin(request: pytest.FixtureRequest) -> RecordingClient:
    """The logged-in `client`: it checks that no response leaked a secret."""
    return request.getfixturevalue("client")


@pytest.fixture
def cli(sqlite_env: Path, tmp_path: Path) -> Cli:
    """`connecthub` in a child process on the migrated data dir of `sqlite_env`."""
    return Cli(data_dir=sqlite_env, cwd=tmp_path)


pytest_plugins = ["tests.engine"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium, one per test module."""
    with chromium() as browser:
        yield browser
