"""Who calls the API, and whether their role allows the route: FastAPI dependencies.

`Caller` reads the bearer token (`Authorization: Bearer chk_...`) and resolves it to the
token's user (`db.tokens`); no token, or a token that is unknown, revoked, expired or whose
user is disabled, is a 401. `requires(role)` makes a route refuse lesser roles with a 403:
every route names its least role in its own declaration.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from connecthub.db.engine import session_scope
from connecthub.db.tokens import authenticate_token
from connecthub.db.users import CurrentUser
from connecthub.security.roles import Role

bearer = HTTPBearer(auto_error=False, description="An API token: `connecthub tokens create`.")


def _authenticate(token: str) -> CurrentUser | None:
    with session_scope() as session:
        return authenticate_token(session, token)


async def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> CurrentUser:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status_code=401, detail="An API token is required: Authorization: Bearer <token>.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    user = await run_in_threadpool(_authenticate, credentials.credentials)
    if user is None:
        raise HTTPException(
            status_code=401, detail="This API token is unknown, revoked or expired.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.state.user = user
    return user


def requires(role: Role) -> object:
    """A dependency that lets `role` and the roles above it through, and refuses others (403)."""

    async def check(user: Annotated[CurrentUser, Depends(caller)]) -> CurrentUser:
        if not user.role.allows(role):
            raise HTTPException(
                status_code=403,
                detail=f"Your role ({user.role.value}) does not allow this; it needs "
                f"{role.value}.",
            )
        return user

    return Depends(check)


Viewer = Annotated[CurrentUser, requires(Role.VIEWER)]
Operator = Annotated[CurrentUser, requires(Role.OPERATOR)]
Admin = Annotated[CurrentUser, requires(Role.ADMIN)]
