"""API tokens: created for a user, stored only as a SHA-256 hash, revocable, expiring.

A token is `chk_` followed by 43 URL-safe characters (256 random bits), shown once when it is
created. Only its SHA-256 is stored: with that much entropy a slow hash adds nothing, and a
lookup by hash is one indexed read. A request with a token acts as the token's user, with the
user's current role; a token stops working when it is revoked, when it expires, or when its
user is disabled. `last_used_at` is written at most once a minute per token, so a busy client
does not turn every read into a write. Creating and revoking a token are audit entries.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from connecthub.db import audit
from connecthub.db.audit import Actor
from connecthub.db.models import ApiToken, User, utcnow
from connecthub.db.users import CurrentUser, get_user

TOKEN_PREFIX = "chk_"
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_LIFETIME = timedelta(days=3650)  # longer is "never expires": leave --expires out for that
_DURATION = re.compile(r"^\s*(\d{1,6})\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class TokenError(ValueError):
    """A token change that cannot be made; the message says why."""


def parse_duration(text: str) -> timedelta:
    """'30d', '12h', '90m', '2w' as a timedelta; TokenError otherwise."""
    match = _DURATION.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise TokenError(
            f"expires: '{text}' is not a duration; use a number and m, h, d or w, e.g. 30d"
        )
    duration = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if duration > MAX_LIFETIME:
        raise TokenError(f"expires: '{text}' is longer than {MAX_LIFETIME.days} days")
    return duration


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session, username: str, *, actor: Actor, name: str = "",
    expires_in: timedelta | None = None,
) -> tuple[ApiToken, str]:
    """A new token for `username`: the row and the token itself (shown once, never stored)."""
    user = get_user(session, username)
    if user.disabled:
        raise TokenError(f"user '{user.username}' is disabled: enable them first")
    if len(name) > 100:
        raise TokenError("name: at most 100 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    row = ApiToken(
        user_id=user.id, name=name.strip(), token_hash=token_hash(token),
        prefix=token[: len(TOKEN_PREFIX) + 6], created_at=now,
        expires_at=now + expires_in if expires_in else None,
    )
    session.add(row)
    session.flush()
    audit.record(session, actor, "token.create", f"token #{row.id}", {
        "user": user.username, "name": row.name,
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
    })
    return row, token


def list_tokens(session: Session) -> list[tuple[ApiToken, str]]:
    """Every token with its user's name, newest first."""
    rows = session.execute(
        select(ApiToken, User.username).join(User, User.id == ApiToken.user_id)
        .order_by(ApiToken.id.desc())
    )
    return [(token, username) for token, username in rows]


def get_token(session: Session, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise TokenError(f"no token #{token_id}; `connecthub tokens list`")
    return token


def revoke_token(session: Session, token_id: int, *, actor: Actor) -> ApiToken:
    token = get_token(session, token_id)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.flush()
        audit.record(session, actor, "token.revoke", f"token #{token.id}")
    return token


def token_state(token: ApiToken, now: datetime | None = None) -> str:
    """active, expired or revoked."""
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= (now or utcnow()):
        return "expired"
    return "active"


def authenticate_token(session: Session, token: str) -> CurrentUser | None:
    """Who `token` acts for, if it is active and its user enabled; records its use."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(token)))
    if row is None or token_state(row) != "active":
        return None
    user = session.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
        session.flush()
    return CurrentUser.of(user, token_id=row.id)
