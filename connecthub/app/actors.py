"""Who the audit trail names for a request or a command: one place for every entry point.

A web request acts as its user (`alice`), or as the user of its API token
(`alice (token #3)`), from the client address (as uvicorn reports it: behind a trusted proxy,
the forwarded one). A command acts as `cli:<operating-system user>` on this machine.
"""

from __future__ import annotations

import getpass

from starlette.requests import Request

from connecthub.db.audit import Actor
from connecthub.db.users import CurrentUser


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def request_actor(request: Request) -> Actor:
    user = getattr(request.state, "user", None)
    name = user.actor if isinstance(user, CurrentUser) else "anonymous"
    return Actor(name, client_address(request))


def cli_actor() -> Actor:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        who = "unknown"
    return Actor(f"cli:{who}", "local")
