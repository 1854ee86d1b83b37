"""Who may use the admin: the login, its throttle, the session cookie and the admin's secrets.

- `AdminAuth` is SQLAdmin's authentication backend: a login checks the users table
  (`db.users`), and the session holds the user's id and when it began; every request reads the
  user again, so a changed role applies at once and a disabled user or a reset password ends
  the session. The first admin is ADMIN_USERNAME with ADMIN_PASSWORD, created at start when
  the table holds no enabled admin; with no password configured, one is generated on first
  start into `DATA_DIR/admin-password` (mode 0600) and its location is logged; there is no
  built-in default. Every login, and every failed one, is an entry of the audit trail.
- `LoginThrottle` (`db.login_throttle`) slows down password guessing; it is kept in the database,
  so all admin replicas share it.
- `SessionCookieMiddleware` keeps the session in a signed cookie that is HttpOnly, SameSite=Lax,
  and Secure whenever the request arrived over https (directly, or through a proxy that uvicorn
  trusts for X-Forwarded-Proto). Its key is SESSION_SECRET, or one generated once into
  `DATA_DIR/session-secret` (mode 0600), so that several admin replicas on one data dir agree.
- `csrf_token` / `require_csrf`: the token that every state-changing form of ours carries, kept in
  the session and compared in constant time.

Secrets files are created like the Fernet key file: written to a private temporary file, then
hard-linked into place, so processes starting together all end up reading the same value.
"""

from __future__ import annotations

import hmac
import logging
import math
import secrets
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from sqladmin.authentication import AuthenticationBackend
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from connecthub.app.actors import client_address
from connecthub.core.config import Settings, get_settings
from connecthub.core.files import write_private_file
from connecthub.db import audit, users
from connecthub.db.audit import Actor
from connecthub.db.engine import session_scope
from connecthub.db.login_throttle import LoginThrottle
from connecthub.db.models import User
from connecthub.db.users import CurrentUser
from connecthub.security.passwords import check_password_strength, generate_password

logger = logging.getLogger(__name__)

ADMIN_PASSWORD_FILE = "admin-password"
SESSION_SECRET_FILE = "session-secret"
# Who the audit trail names for the first admin, created at start.
SYSTEM = Actor("system", "local")
# Where the session keeps who logged in, and when (epoch seconds).
SESSION_USER_ID = "user_id"
SESSION_STARTED = "started"
MIN_SESSION_SECRET_LENGTH = 32
SESSION_COOKIE = "connecthub_admin"
SESSION_MAX_AGE_SECONDS = 12 * 3600
CSRF_SESSION_KEY = "csrf_token"
CSRF_FORM_FIELD = "csrf_token"


class AdminConfigError(RuntimeError):
    """The admin's credentials or session secret are unusable; the message says how to fix it."""


def read_or_create_secret(path: Path, generate: Callable[[], str]) -> tuple[str, bool]:
    """The secret stored in `path`, created first with `generate()` when absent (mode 0600).

    Returns the value and whether this call created the file.
    """
    created = False
    if not path.exists():
        # Another process may win the race to create it: then its value is the one read below.
        created = write_private_file(path, (generate() + "\n").encode(), replace=False)
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("%s is readable by other users: run `chmod 600 %s`", path, path)
    value = path.read_text().strip()
    if not value:
        raise AdminConfigError(f"{path} is empty: delete it to have a new value generated.")
    return value, created


@dataclass(frozen=True)
class AdminCredentials:
    username: str
    password: str
    # Where the generated password is kept; None when it comes from ADMIN_PASSWORD.
    password_file: Path | None = None


def load_credentials(settings: Settings) -> AdminCredentials:
    """ADMIN_USERNAME and ADMIN_PASSWORD, or the password generated into DATA_DIR."""
    username = settings.admin_username.strip()
    if not username:
        raise AdminConfigError("ADMIN_USERNAME is empty: set it, or unset it to use 'admin'.")
    if settings.admin_password:
        try:
            check_password_strength(settings.admin_password)
        except ValueError as error:
            raise AdminConfigError(
                f"ADMIN_PASSWORD: {error}; choose another, or unset it to have one generated "
                "into DATA_DIR."
            ) from None
        return AdminCredentials(username, settings.admin_password)
    path = settings.data_dir / ADMIN_PASSWORD_FILE
    password, created = read_or_create_secret(path, generate_password)
    if created:
        logger.info("generated the admin password into %s", path)
    return AdminCredentials(username, password, path)


def load_session_secret(settings: Settings) -> str:
    """SESSION_SECRET, or the one generated into DATA_DIR on first start."""
    if settings.session_secret:
        if len(settings.session_secret) < MIN_SESSION_SECRET_LENGTH:
            raise AdminConfigError(
                f"SESSION_SECRET is shorter than {MIN_SESSION_SECRET_LENGTH} characters: use a "
                "random value, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
                ", or unset it to have one generated into DATA_DIR."
            )
        return settings.session_secret
    value, _created = read_or_create_secret(
        settings.data_dir / SESSION_SECRET_FILE, lambda: secrets.token_urlsafe(48)
    )
    return value


class SessionCookieMiddleware:
    """Starlette's signed-cookie sessions, with the Secure flag when the request came over https.

    The secret is read on the first request, so building the app has no side effects.
    """

    def __init__(self, app: ASGIApp, secret: Callable[[], str]) -> None:
        self.app = app
        self._secret = secret
        self._sessions: dict[bool, SessionMiddleware] | None = None

    def _build(self) -> dict[bool, SessionMiddleware]:
        key = self._secret()
        return {
            secure: SessionMiddleware(
                self.app,
                secret_key=key,
                session_cookie=SESSION_COOKIE,
                max_age=SESSION_MAX_AGE_SECONDS,
                same_site="lax",
                https_only=secure,
            )
            for secure in (False, True)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self._sessions is None:
            self._sessions = self._build()
        secure = scope.get("scheme") in ("https", "wss")
        await self._sessions[secure](scope, receive, send)


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


LoginPage = Callable[[Request, str, int], Awaitable[Response]]


def current_user(request: Request) -> CurrentUser | None:
    user = getattr(request.state, "user", None)
    return user if isinstance(user, CurrentUser) else None


def _ensure_first_admin(credentials: AdminCredentials) -> User | None:
    """The configured admin, created when no enabled admin exists (None if one does)."""
    try:
        with session_scope() as session:
            return users.ensure_admin(
                session, credentials.username, credentials.password, actor=SYSTEM
            )
    except IntegrityError:
        return None  # another replica created the first admin at the same moment


def _login(
    username: str, password: str, address: str, credentials: AdminCredentials
) -> CurrentUser | None:
    # As at start: a database whose users were all removed since lets the configured admin in.
    _ensure_first_admin(credentials)
    with session_scope() as session:
        user = users.authenticate(session, username, password)
        found = None if user is None else CurrentUser.of(user)
        audit.record(session, Actor(found.username if found else username[:100], address),
                     "login.success" if found else "login.failure")
        return found


def _throttled(username: str, address: str, wait: float) -> None:
    # A log line, not an audit row: refused attempts cost no password check and would let
    # anyone grow the append-only audit trail without bound; the failures before are recorded.
    logger.warning("admin login refused (throttled %d s more) from %s", math.ceil(wait), address)


def _session_user(user_id: object, started: object) -> CurrentUser | None:
    if not isinstance(started, int | float):
        return None
    with session_scope() as session:
        user = users.session_user(session, user_id, datetime.fromtimestamp(started, UTC))
        return None if user is None else CurrentUser.of(user)


class AdminAuth(AuthenticationBackend):
    """SQLAdmin's login against the users table, with a throttle on failed attempts."""

    def __init__(
        self,
        settings: Callable[[], Settings] = get_settings,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self._settings = settings
        self._credentials: AdminCredentials | None = None
        self.throttle = throttle or LoginThrottle()
        # Set by the admin once its templates exist: renders the login page with an error.
        self.login_page: LoginPage | None = None
        self.middlewares = [
            Middleware(SessionCookieMiddleware, secret=lambda: load_session_secret(settings()))
        ]

    @property
    def credentials(self) -> AdminCredentials:
        if self._credentials is None:
            self._credentials = load_credentials(self._settings())
        return self._credentials

    def prepare(self) -> str:
        """Check (creating if needed) the session secret and the first admin, at start.

        Returns where the operator finds the login, for the startup log (never the password).
        """
        load_session_secret(self._settings())
        credentials = self.credentials
        created = _ensure_first_admin(credentials)
        if created is None:
            return "admin login: the users in the database (`connecthub users list`)"
        if credentials.password_file is None:
            return f"admin login: user '{created.username}', password from ADMIN_PASSWORD"
        return (
            f"admin login: user '{created.username}', password in "
            f"{credentials.password_file} (set ADMIN_PASSWORD to choose one)"
        )

    async def login(self, request: Request) -> Response | bool:
        form = await request.form()
        username = str(form.get("username") or "").strip()
        password = str(form.get("password") or "")
        key = (client_address(request), username.lower()[:200])
        wait = await run_in_threadpool(self.throttle.retry_after, key)
        if wait:
            await run_in_threadpool(_throttled, username, key[0], wait)
            return await self._refuse(request, wait)
        user = await run_in_threadpool(_login, username, password, key[0], self.credentials)
        if user is not None:
            await run_in_threadpool(self.throttle.succeeded, key)
            request.session.clear()
            request.session[SESSION_USER_ID] = user.id
            request.session[SESSION_STARTED] = time.time()
            logger.info("admin login of %s from %s", user.username, key[0])
            return True
        await run_in_threadpool(self.throttle.failed, key)
        logger.warning("failed admin login from %s", key[0])
        wait = await run_in_threadpool(self.throttle.retry_after, key)
        if wait:
            return await self._refuse(request, wait)
        return False

    async def _refuse(self, request: Request, wait: float) -> Response | bool:
        message = (
            "Too many failed logins from your address. "
            f"Wait {math.ceil(wait)} seconds, then try again."
        )
        if self.login_page is None:
            raise HTTPException(status_code=429, detail=message)
        return await self.login_page(request, message, 429)

    async def logout(self, request: Request) -> Response | bool:
        request.session.clear()
        return False  # SQLAdmin then redirects to the login page

    async def authenticate(self, request: Request) -> Response | bool:
        user_id = request.session.get(SESSION_USER_ID)
        if user_id is None:
            return False
        user = await run_in_threadpool(
            _session_user, user_id, request.session.get(SESSION_STARTED)
        )
        if user is None:
            request.session.clear()
            return False
        request.state.user = user
        # SameSite=Lax still sends the cookie with a form posted from a sibling subdomain:
        # a state change must come from the admin's own pages.
        return request.method in ("GET", "HEAD", "OPTIONS") or same_origin(request)

    async def get_user_id(self, request: Request) -> str | None:
        user = current_user(request)
        return user.username if user is not None else None


def same_origin(request: Request) -> bool:
    """Whether the browser says the request comes from a page of this origin.

    Browsers send Sec-Fetch-Site (and Origin) with every POST; clients that send neither (curl,
    tests) are not browsers, which a cross-site request needs.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.url.netloc


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use; every POST form of ours carries it."""
    token = request.session.get(CSRF_SESSION_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_SESSION_KEY] = token
    return token


async def require_csrf(request: Request) -> FormData:
    """The submitted form, after checking its CSRF token against the session's (403 if not)."""
    form = await request.form()
    submitted = form.get(CSRF_FORM_FIELD)
    expected = request.session.get(CSRF_SESSION_KEY)
    if not (
        isinstance(submitted, str)
        and isinstance(expected, str)
        and expected
        and _equal(submitted, expected)
    ):
        raise HTTPException(
            status_code=403,
            detail="This form has expired or did not come from this admin. "
            "Reload the page and try again.",
        )
    return form
