"""`use_settings`: point ConnectHub (its cached settings and engine) at an environment."""

from __future__ import annotations

import os

import pytest

from connecthub.core.config import get_settings
from connecthub.db.engine import reset_engine


def use_settings(monkeypatch: pytest.MonkeyPatch | None, **env: str) -> None:
    """Point ConnectHub at `env` (in os.environ, so child processes inherit it)."""
    for key, value in env.items():
        if monkeypatch is None:
            os.environ[key] = value
        else:
            monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    reset_engine()
