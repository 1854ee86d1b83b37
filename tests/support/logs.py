"""`captured_loggers`: every record of named loggers in pytest's `caplog`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


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
