"""The admin's API tokens page (admins only, see `permissions`): create a token for a user,
see each token's state and last use, revoke one.

A token is created through `db.tokens` and shown once, in a message that stays until dismissed;
only its SHA-256 is stored, and the pages show only its first characters. Revoke is a POST form
with the session's CSRF token.
"""

from __future__ import annotations

from typing import Any

from sqladmin import ModelView, expose
from sqladmin.flash import FlashLevel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from wtforms import Form
from wtforms.fields import StringField
from wtforms.validators import InputRequired

from connecthub.app.actors import request_actor
from connecthub.app.admin.auth import require_csrf
from connecthub.app.admin.formatting import TYPE_FORMATTERS, format_time
from connecthub.app.admin.permissions import require
from connecthub.app.admin.views import AddressIds, notify
from connecthub.db import tokens, users
from connecthub.db.audit import Actor
from connecthub.db.engine import session_scope
from connecthub.db.models import ApiToken


class TokenCreateForm(Form):
    username = StringField("User", [InputRequired()], render_kw={"class": "form-control"},
                           description="The token acts as this user, with the user's role.")
    name = StringField("Name", render_kw={"class": "form-control"},
                       description="What the token is for, e.g. ci-deploy.")
    expires = StringField("Expires after", render_kw={"class": "form-control",
                                                      "placeholder": "30d"},
                          description="e.g. 30d, 12h, 2w; blank: never.")


class AdminTokenError(ValueError):
    """Shown on the form by SQLAdmin."""


def _create(username: str, name: str, expires: str, actor: Actor) -> tuple[ApiToken, str]:
    lifetime = tokens.parse_duration(expires) if expires.strip() else None
    with session_scope() as session:
        return tokens.create_token(session, username, actor=actor, name=name,
                                   expires_in=lifetime)


def _revoke(token_id: int, actor: Actor) -> None:
    with session_scope() as session:
        tokens.revoke_token(session, token_id, actor=actor)


class TokenView(AddressIds, ModelView, model=ApiToken):
    name = "API token"
    name_plural = "API tokens"
    icon = "fa-solid fa-key"
    can_edit = False
    can_delete = False  # revoke instead: the audit trail keeps naming the token
    can_export = False
    column_list = [ApiToken.id, ApiToken.user_id, ApiToken.name, ApiToken.prefix,
                   ApiToken.created_at, ApiToken.expires_at, ApiToken.last_used_at,
                   ApiToken.revoked_at]
    column_details_list = column_list
    column_labels = {
        ApiToken.id: "Id", ApiToken.user_id: "User id", ApiToken.name: "Name",
        ApiToken.prefix: "Starts with", ApiToken.created_at: "Created",
        ApiToken.expires_at: "Expires", ApiToken.last_used_at: "Last used",
        ApiToken.revoked_at: "Revoked",
    }
    column_formatters = {
        ApiToken.prefix: lambda token, _name: f"{token.prefix}…",
        ApiToken.last_used_at: lambda token, _name: format_time(token.last_used_at)[:16],
    }
    column_sortable_list = [ApiToken.id]
    column_default_sort = [(ApiToken.id, True)]
    column_type_formatters = TYPE_FORMATTERS
    list_template = "user_list.html"
    details_template = "token_details.html"

    async def scaffold_form(self, rules: list[str] | None = None) -> type[Form]:
        return TokenCreateForm

    async def insert_model(self, request: Request, data: dict[str, Any]) -> ApiToken:
        try:
            row, token = await run_in_threadpool(
                _create, data["username"], data.get("name") or "", data.get("expires") or "",
                request_actor(request),
            )
        except (tokens.TokenError, users.UserError) as error:
            raise AdminTokenError(str(error)) from None
        notify(request, FlashLevel.warning,
               f"Token #{row.id} created. Copy it now, it is not shown again: {token}")
        return row

    @expose("/revoke/{pk}", methods=["POST"])
    async def revoke_token(self, request: Request) -> Response:
        require(self, request, "revoke")
        await require_csrf(request)
        try:
            token_id = int(request.path_params["pk"])
            await run_in_threadpool(_revoke, token_id, request_actor(request))
        except (ValueError, tokens.TokenError):
            raise HTTPException(status_code=404) from None
        notify(request, FlashLevel.success, f"Token #{token_id} revoked.")
        return RedirectResponse(
            str(request.url_for("admin:details", identity=self.identity, pk=token_id)),
            status_code=303,
        )
