"""The operator UI: SQLAdmin at /admin, behind a login: the health dashboard as its home, the
Job and JobLog pages, the alert channels and deliveries, the users, their API tokens and the
audit trail; what each role may see and do is `permissions`.

`mount_admin(app)` mounts it on a FastAPI app and returns the `Admin`. Its database sessions
bind to ConnectHub's engine when they first run a query, so building the app touches neither
the database nor the data dir.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqladmin import Admin
from sqlalchemy import Engine
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import Response

from connecthub.app.admin.alert_views import AlertChannelView, AlertDeliveryView
from connecthub.app.admin.audit_views import AuditView
from connecthub.app.admin.auth import AdminAuth, csrf_token
from connecthub.app.admin.dashboard import ConnectHubAdmin
from connecthub.app.admin.permissions import RoleAuthorization
from connecthub.app.admin.token_views import TokenView
from connecthub.app.admin.user_views import UserView
from connecthub.app.admin.views import JobLogView, JobView
from connecthub.db.engine import get_engine

__all__ = ["AdminAuth", "mount_admin"]

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


class EngineSession(Session):
    """A session on ConnectHub's current engine (DB_URL), looked up when a query needs it."""

    def get_bind(self, *args: Any, **kwargs: Any) -> Engine:
        return get_engine()


def mount_admin(app: FastAPI, auth: AdminAuth | None = None) -> Admin:
    auth = auth or AdminAuth()
    admin = ConnectHubAdmin(
        app,
        session_maker=sessionmaker(class_=EngineSession),
        base_url="/admin",
        title="ConnectHub",
        templates_dir=str(TEMPLATES_DIR),
        authentication_backend=auth,
        authorization_backend=RoleAuthorization(),
    )
    admin.templates.env.globals["csrf_token"] = csrf_token

    async def login_page(request: Request, error: str, status_code: int) -> Response:
        return await admin.templates.TemplateResponse(
            request, "sqladmin/login.html", {"error": error}, status_code=status_code
        )

    auth.login_page = login_page

    async def not_found(request: Request, _error: Exception) -> Response:
        # A value the database cannot hold (a NUL, an id beyond BIGINT) names nothing that exists.
        return await admin.templates.TemplateResponse(
            request, "sqladmin/error.html",
            {"status_code": 404, "message": "Not found"}, status_code=404,
        )

    admin.admin.add_exception_handler(DataError, not_found)
    admin.add_view(JobView)
    admin.add_view(JobLogView)
    admin.add_view(AlertChannelView)
    admin.add_view(AlertDeliveryView)
    admin.add_view(UserView)
    admin.add_view(TokenView)
    admin.add_view(AuditView)
    return admin
