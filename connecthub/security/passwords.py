"""Password hashing (argon2 through pwdlib) and generated one-time passwords.

`verify_password` always does the work of one verification, also when there is no stored hash
(an unknown or disabled user), so that the time a login takes does not tell whether the user
exists.
"""

from __future__ import annotations

import secrets

from pwdlib import PasswordHash

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024

_hasher = PasswordHash.recommended()
# A hash of a random value, verified against when there is no real one (see above).
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def check_password_strength(password: str) -> str:
    """`password`, or ValueError saying why it cannot be used."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(check_password_strength(password))


def verify_password(password: str, password_hash: str | None) -> bool:
    if len(password) > MAX_PASSWORD_LENGTH:
        password = ""  # never hash an unbounded input; the dummy check below still runs
    try:
        valid = _hasher.verify(password, password_hash or _DUMMY_HASH)
    except Exception:  # a malformed stored hash is no login, whatever pwdlib raises for it
        return False
    return valid and password_hash is not None


def generate_password() -> str:
    """A one-time password: 24 URL-safe characters (144 bits)."""
    return secrets.token_urlsafe(18)
