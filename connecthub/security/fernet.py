"""Fernet encryption of `secret_cfg`, the key file, fail-closed checks and key rotation.

The key file (FERNET_KEY_PATH) holds one Fernet key per line, newest first; all of them decrypt,
the first one encrypts (MultiFernet). It is created on first use, atomically and with mode 0600:
the key is written to a private temporary file which is then hard-linked into place, so among
processes racing on a fresh path exactly one link succeeds and every process reads that key.

Fail closed: a key is only ever generated when the database holds no encrypted data
(`check_key_usable`). When encrypted data exists and the key file is missing, or no key in it
reads the data, every entry point stops with `KeyUnusableError`, whose message names the key file
and what to do. A decryption error names the job, never the token or the plaintext.

Rotation (`rotate_key`): a new key is put first in the key file (the old ones stay readable),
then every Job's token is re-encrypted in one database transaction. Killed at any point, nothing
is lost: before the commit every token is still readable by an old key, which is still in the
file. `retire_old_keys` drops the old keys once every token reads with the newest key alone.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from connecthub.core.config import get_settings
from connecthub.core.files import write_private_file

__all__ = [
    "DecryptionError",
    "KeyUnusableError",
    "check_key_usable",
    "decrypt_json",
    "encrypt_json",
    "retire_old_keys",
    "rotate_key",
]


class KeyUnusableError(RuntimeError):
    """Encrypted data exists that the key file cannot read (or the key file is missing)."""


class DecryptionError(RuntimeError):
    """A token could not be decrypted; the message names the job, not the token."""


def _key_path() -> Path:
    return get_settings().key_path


def _read_keys(path: Path) -> list[bytes]:
    lines = path.read_text().split()
    if not lines:
        raise KeyUnusableError(f"The key file {path} is empty. Restore it from your backup.")
    try:
        for line in lines:
            Fernet(line.encode())
    except ValueError:
        raise KeyUnusableError(
            f"The key file {path} does not hold valid Fernet keys. Restore it from your backup."
        ) from None
    return [line.encode() for line in lines]


def _write_keys(path: Path, keys: list[bytes], *, replace: bool) -> bool:
    return write_private_file(path, b"\n".join(keys) + b"\n", replace=replace)


def load_keys(*, create: bool = True) -> list[bytes]:
    """The keys in the key file, newest first; created with one new key when absent."""
    path = _key_path()
    if not path.exists():
        if not create:
            raise KeyUnusableError(f"The key file {path} does not exist.")
        _write_keys(path, [Fernet.generate_key()], replace=False)
    return _read_keys(path)


def _fernet(*, create: bool = True) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in load_keys(create=create)])


def encrypt_json(obj: dict[str, Any], *, create_key: bool = True) -> str:
    """The Fernet token of `obj` serialized as JSON.

    The key file is created on first use; pass create_key=False when encrypted data already
    exists, so that a key file lost meanwhile is a `KeyUnusableError`, never a new key.
    """
    if not isinstance(obj, dict):
        raise TypeError("secrets must be a JSON object")
    plaintext = json.dumps(obj, separators=(",", ":")).encode()
    return _fernet(create=create_key).encrypt(plaintext).decode()


def decrypt_json(token: str, *, job_id: str | None = None) -> dict[str, Any]:
    """The object encrypted in `token`; `DecryptionError` naming `job_id` if no key reads it."""
    owner = f"job {job_id!r}" if job_id else "this secret"
    try:
        fernet = _fernet(create=False)
        return json.loads(fernet.decrypt(token.encode()))
    except (InvalidToken, KeyUnusableError, ValueError):
        raise DecryptionError(
            f"The secrets of {owner} cannot be decrypted with the key file {_key_path()}. "
            "Restore the key file that encrypted them, or enter the secrets again."
        ) from None


def check_key_usable(tokens: list[str]) -> None:
    """Refuse to go on when encrypted `tokens` exist that the key file cannot read.

    With no tokens, the key file is created if missing. Called by every entry point at start.
    """
    path = _key_path()
    if not tokens:
        load_keys(create=True)
        return
    if not path.exists():
        raise KeyUnusableError(
            f"The database holds encrypted secrets but the key file {path} is missing. "
            "Restore it from your backup (or point FERNET_KEY_PATH at it); ConnectHub will not "
            "create a new key, which could never read the existing secrets."
        )
    fernet = _fernet(create=False)
    unreadable = 0
    for token in tokens:
        try:
            fernet.decrypt(token.encode())
        except InvalidToken:
            unreadable += 1
    if unreadable:
        raise KeyUnusableError(
            f"The key file {path} cannot decrypt {unreadable} of {len(tokens)} stored secrets: "
            "it was replaced or belongs to another installation. Restore the key file that "
            "encrypted them (from your backup) and start again."
        )


@contextmanager
def _rotation_lock() -> Iterator[None]:
    path = _key_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def rotate_key(reencrypt: Any) -> int:
    """Put a new key first and re-encrypt every token with it.

    `reencrypt(rotate)` must apply `rotate(token) -> token` to every stored token in one
    transaction and return how many it rewrote. Returns that number.
    """
    with _rotation_lock():
        keys = load_keys(create=True)
        _write_keys(_key_path(), [Fernet.generate_key(), *keys], replace=True)
        fernet = _fernet(create=False)
        return reencrypt(lambda token: fernet.rotate(token.encode()).decode())


def retire_old_keys(tokens: list[str]) -> int:
    """Keep only the newest key once every token reads with it; returns how many were dropped."""
    with _rotation_lock():
        keys = load_keys(create=False)
        newest = Fernet(keys[0])
        for token in tokens:
            try:
                newest.decrypt(token.encode())
            except InvalidToken:
                raise KeyUnusableError(
                    "Some secrets are not yet encrypted with the newest key; run "
                    "`connecthub rotate-key` to completion before retiring old keys."
                ) from None
        if len(keys) > 1:
            _write_keys(_key_path(), keys[:1], replace=True)
        return len(keys) - 1
