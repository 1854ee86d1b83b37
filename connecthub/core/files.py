"""Private files written whole or not at all: the key file and the admin's generated secrets."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_private_file(path: Path, data: bytes, *, replace: bool) -> bool:
    """Write `data` to `path` with mode 0600, atomically.

    The data goes to a private temporary file in the same directory, then is renamed over `path`
    (`replace=True`) or hard-linked to it (`replace=False`): a link fails if `path` exists, so
    among processes racing to create it exactly one wins and every reader sees complete content.
    Returns False when `replace=False` and `path` already existed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
