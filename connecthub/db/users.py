"""The users who log in, and their roles: the one place that creates, changes and checks them.

Usernames are stored lower-case and compared that way. Passwords are hashed by
`security.passwords`; a reset or a disable moves `sessions_valid_after`, which ends the user's
open admin sessions. `ensure_admin` creates the first admin (ADMIN_USERNAME with ADMIN_PASSWORD
or the generated password) when the table holds no enabled admin. Every change is flushed, not
committed, with its audit entry (`db.audit`, naming the `actor`): the caller's transaction
holds both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connecthub.db import audit
from connecthub.db.audit import Actor
from connecthub.db.models import User, utcnow
from connecthub.security.passwords import hash_password, verify_password
from connecthub.security.roles import Role

USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,99}$")


@dataclass(frozen=True)
class CurrentUser:
    """Who makes a request: a logged-in user, or the user behind an API token (`token_id`)."""

    id: int
    username: str
    role: Role
    token_id: int | None = None

    @classmethod
    def of(cls, user: User, token_id: int | None = None) -> CurrentUser:
        return cls(user.id, user.username, Role(user.role), token_id)

    @property
    def actor(self) -> str:
        """How the audit trail names them."""
        if self.token_id is None:
            return self.username
        return f"{self.username} (token #{self.token_id})"


class UserError(ValueError):
    """A user change that cannot be made; the message says why and what to do."""


class UserNotFoundError(UserError, LookupError):
    pass


def normalize_username(username: str) -> str:
    """`username` as stored; UserError naming what is wrong with it."""
    name = username.strip().lower()
    if not USERNAME_PATTERN.match(name):
        raise UserError(
            "username: 1 to 100 letters, digits, '.', '_', '@' or '-', starting with a letter "
            "or digit"
        )
    return name


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username.strip().lower()))


def get_user(session: Session, username: str) -> User:
    user = find_user(session, username)
    if user is None:
        raise UserNotFoundError(f"no user '{username.strip().lower()}'; `connecthub users list`")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def _password_hash(password: str) -> str:
    try:
        return hash_password(password)
    except ValueError as error:
        raise UserError(f"password: {error}") from None


def create_user(
    session: Session, username: str, role: Role, password: str, *, actor: Actor
) -> User:
    name = normalize_username(username)
    if find_user(session, name) is not None:
        raise UserError(f"a user '{name}' already exists")
    user = User(username=name, role=Role(role).value, password_hash=_password_hash(password),
                disabled=False, created_at=utcnow(), sessions_valid_after=utcnow())
    session.add(user)
    session.flush()
    audit.record(session, actor, "user.create", name, {"role": user.role})
    return user


def _keeps_an_admin(session: Session, user: User) -> None:
    """Refuse to take away the last enabled admin (nobody could manage users any more)."""
    others = session.scalar(
        select(func.count()).select_from(User).where(
            User.role == Role.ADMIN.value, User.disabled.is_(False), User.id != user.id
        )
    )
    if user.role == Role.ADMIN.value and not user.disabled and not others:
        raise UserError(f"'{user.username}' is the last enabled admin: make another admin first")


def set_role(session: Session, username: str, role: Role, *, actor: Actor) -> User:
    user = get_user(session, username)
    if Role(role) != Role.ADMIN:
        _keeps_an_admin(session, user)
    if user.role != Role(role).value:
        audit.record(session, actor, "user.role", user.username,
                     {"from": user.role, "to": Role(role).value})
        user.role = Role(role).value
    session.flush()
    return user


def set_disabled(session: Session, username: str, disabled: bool, *, actor: Actor) -> User:
    user = get_user(session, username)
    if disabled:
        _keeps_an_admin(session, user)
        user.sessions_valid_after = utcnow()
    if user.disabled != disabled:
        audit.record(session, actor, "user.disable" if disabled else "user.enable",
                     user.username)
        user.disabled = disabled
    session.flush()
    return user


def set_password(session: Session, username: str, password: str, *, actor: Actor) -> User:
    user = get_user(session, username)
    user.password_hash = _password_hash(password)
    user.sessions_valid_after = utcnow()
    session.flush()
    audit.record(session, actor, "user.password", user.username)
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The enabled user with this username and password, or None (in about the same time)."""
    user = find_user(session, username) if len(username) <= 200 else None
    valid = verify_password(password, user.password_hash if user is not None else None)
    if user is None or user.disabled or not valid:
        return None
    user.last_login_at = utcnow()
    session.flush()
    return user


def session_user(session: Session, user_id: object, started_at: datetime) -> User | None:
    """The user of an admin session begun at `started_at`, if it is still valid."""
    if not isinstance(user_id, int):
        return None
    user = session.get(User, user_id)
    if user is None or user.disabled or started_at < user.sessions_valid_after:
        return None
    return user


def ensure_admin(session: Session, username: str, password: str, *, actor: Actor) -> User | None:
    """Create the first admin when there is no enabled admin; the user created, if any."""
    admins = session.scalar(
        select(func.count()).select_from(User).where(
            User.role == Role.ADMIN.value, User.disabled.is_(False)
        )
    )
    if admins:
        return None
    existing = find_user(session, username)
    if existing is not None:
        # The configured admin exists but lost the role or was disabled: give it back.
        set_role(session, existing.username, Role.ADMIN, actor=actor)
        set_disabled(session, existing.username, False, actor=actor)
        return set_password(session, existing.username, password, actor=actor)
    return create_user(session, username, Role.ADMIN, password, actor=actor)
