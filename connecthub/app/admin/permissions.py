"""Which role each admin page and action needs: the admin's one table of permissions.

`RoleAuthorization` is SQLAdmin's authorization backend: SQLAdmin asks it before every list,
details, create, edit, delete, export and import (and hides the menu entries and buttons it
refuses), and our own POST routes ask it through `require` with an action of ours (`run`,
`enable`, `retry`). The user is the one `AdminAuth.authenticate` read for this request.

- viewer: list and details of every view but users, API tokens and the audit trail (it names
  who logged in from where);
- operator: also `run` (Run now, Run with params), `enable` (Enable, Disable), `retry`;
- admin: everything, and the only role that sees users, API tokens and the audit trail.
"""

from __future__ import annotations

from typing import Any

from sqladmin.authorization import Action, AuthorizationBackend
from starlette.exceptions import HTTPException
from starlette.requests import Request

from connecthub.app.admin.auth import current_user
from connecthub.security.roles import Role

# Our own actions, beyond SQLAdmin's.
RUN, ENABLE, RETRY = "run", "enable", "retry"
# Views that only admins see: who may log in, and with which rights.
ADMIN_ONLY_VIEWS = frozenset({"user", "api-token", "audit-entry"})
READ_ACTIONS = frozenset({Action.LIST, Action.DETAILS})
OPERATOR_ACTIONS = frozenset({RUN, ENABLE, RETRY})


def required_role(identity: str, action: str) -> Role:
    """The least role that may do `action` on the view `identity`."""
    if identity in ADMIN_ONLY_VIEWS:
        return Role.ADMIN
    if action in READ_ACTIONS:
        return Role.VIEWER
    if action in OPERATOR_ACTIONS:
        return Role.OPERATOR
    return Role.ADMIN


def may(request: Request, identity: str, action: str) -> bool:
    """Whether the user of this request may do `action` on the view `identity`."""
    user = current_user(request)
    return user is not None and user.role.allows(required_role(identity, str(action)))


class RoleAuthorization(AuthorizationBackend):
    def has_permission(
        self, request: Request, identity: str, action: str, obj: Any | None = None
    ) -> bool:
        return may(request, identity, action)


def require(view: Any, request: Request, action: str) -> None:
    """403 unless the current user may do `action` on `view` (checked on the server, always)."""
    if not view.has_permission(request, action):
        raise HTTPException(status_code=403, detail="Your role does not allow this.")
