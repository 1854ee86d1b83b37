"""Logging for every ConnectHub process, and the masking of the running job's secrets.

`configure_logging()` sends records to stdout and, when LOG_DIR is set, to a rotating file
(`log_to_file()`, which is all a flow run's process adds to Prefect's own logging).
`secrets_masked(secrets)` registers the values of a job's secrets for as long as the job runs:
every log record created in the process meanwhile (ConnectHub's, the plugin's, the client's and
Prefect's run logger alike, since masking happens in the record factory, before any handler sees
the record), the text of tracebacks, and whatever is printed to stdout/stderr has each value,
and its base64 forms, replaced by `***`. `mask(text)` applies the same replacement to any string,
e.g. an error stored in JobLog.
"""

from __future__ import annotations

import base64
import logging
import logging.handlers
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

MASK = "***"
# Shorter values would mask ordinary words and digits in every log line.
MIN_MASKED_LENGTH = 3

_lock = threading.Lock()
_masked: list[str] = []  # longest first, so a value containing another is masked whole
_registered: Counter[str] = Counter()  # how many open blocks registered each value
_factory_installed = False


def _variants(value: str) -> set[str]:
    raw = value.encode()
    forms = {value}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(raw).decode()
        forms.update({encoded, encoded.rstrip("=")})
    return {form for form in forms if len(form) >= MIN_MASKED_LENGTH}


def secret_values(obj: Any) -> set[str]:
    """Every string (and number) found in a secrets object, at any depth."""
    found: set[str] = set()
    if isinstance(obj, Mapping):
        for item in obj.values():
            found |= secret_values(item)
    elif isinstance(obj, list | tuple | set):
        for item in obj:
            found |= secret_values(item)
    elif isinstance(obj, str | int | float) and not isinstance(obj, bool):
        text = str(obj)
        if len(text) >= MIN_MASKED_LENGTH:
            found.add(text)
    return found


def mask(text: str) -> str:
    """`text` with every registered secret value replaced by `***`."""
    if not _masked or not text:
        return text
    for value in _masked:
        if value in text:
            text = text.replace(value, MASK)
    return text


def _register(values: set[str]) -> list[str]:
    global _masked
    added: list[str] = []
    for value in values:
        added.extend(_variants(value))
    with _lock:
        _registered.update(added)
        _masked = sorted(_registered, key=len, reverse=True)
    return added


def _unregister(values: list[str]) -> None:
    global _masked
    with _lock:
        _registered.subtract(values)
        for value in [value for value, count in _registered.items() if count <= 0]:
            del _registered[value]
        _masked = sorted(_registered, key=len, reverse=True)


class _MaskingStream:
    """A text stream that masks secrets in everything written through it."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(mask(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def secrets_masked(secrets: Mapping[str, Any] | None) -> Iterator[None]:
    """Mask the values of `secrets` everywhere in this process until the block ends."""
    _install_record_factory()
    added = _register(secret_values(secrets or {}))
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _MaskingStream(stdout), _MaskingStream(stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        _unregister(added)


def _install_record_factory() -> None:
    global _factory_installed
    with _lock:
        if _factory_installed:
            return
        _factory_installed = True
    previous = logging.getLogRecordFactory()
    formatter = logging.Formatter()

    def masking_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if not _masked:
            return record
        try:
            message = record.getMessage()
        except Exception:  # a malformed call keeps its own error path
            return record
        record.msg, record.args = mask(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask(formatter.formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return record

    logging.setLogRecordFactory(masking_factory)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: int | str = "INFO", log_dir: Path | None = None) -> None:
    """Log ConnectHub's records to stdout and, with `log_dir`, to `connecthub.log` there."""
    _install_record_factory()
    logger = logging.getLogger("connecthub")
    logger.setLevel(level)
    if getattr(logger, "_connecthub_configured", False):
        return
    formatter = logging.Formatter(LOG_FORMAT)
    stream = logging.StreamHandler(sys.stdout)
    stream.setFormatter(formatter)
    logger.addHandler(stream)
    if log_dir is not None:
        log_to_file(log_dir)
    logger.propagate = False
    logger._connecthub_configured = True  # type: ignore[attr-defined]


_file_handlers: dict[Path, logging.Handler] = {}


def log_to_file(log_dir: Path) -> None:
    """Also write ConnectHub's, the plugins' and Prefect's records to LOG_DIR/connecthub.log.

    A flow run's process calls only this: Prefect already sends its records to stdout and to the
    Prefect API. Idempotent per directory.
    """
    _install_record_factory()
    path = (log_dir / "connecthub.log").resolve()
    with _lock:
        if path in _file_handlers:
            return
        log_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=10 * 1024 * 1024, backupCount=5
        )
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        _file_handlers[path] = handler
    # Plugins and clients log under their own names; keep them in the file too.
    for name in ("connecthub", "extensions", "prefect"):
        logging.getLogger(name).addHandler(handler)
