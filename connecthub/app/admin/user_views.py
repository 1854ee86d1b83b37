"""The admin's Users page (admins only, see `permissions`): add a user with a role, change a
role, disable or enable, set a new password.

Every change goes through `db.users`, which hashes passwords and refuses to take away the last
enabled admin. A password left blank on create is generated and shown once, in a message that
stays until dismissed; it is never stored in the clear. Users are disabled, not deleted, so the
audit trail keeps naming who did what.
"""

from __future__ import annotations

from typing import Any

from sqladmin import ModelView
from sqladmin.flash import FlashLevel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from wtforms import Form
from wtforms.fields import BooleanField, PasswordField, SelectField, StringField
from wtforms.validators import InputRequired

from connecthub.app.actors import request_actor
from connecthub.app.admin.formatting import TYPE_FORMATTERS
from connecthub.app.admin.views import AddressIds, notify
from connecthub.db import users
from connecthub.db.audit import Actor
from connecthub.db.engine import session_scope
from connecthub.db.models import User
from connecthub.security.passwords import generate_password
from connecthub.security.roles import ROLE_ORDER, Role

ROLE_CHOICES = [(role.value, role.value) for role in ROLE_ORDER]


class UserCreateForm(Form):
    username = StringField("Username", [InputRequired()], render_kw={"class": "form-control"})
    role = SelectField("Role", choices=ROLE_CHOICES, render_kw={"class": "form-select"})
    password = PasswordField(
        "Password", render_kw={"class": "form-control", "autocomplete": "new-password"},
        description="Blank: a one-time password is generated and shown once.",
    )


class UserEditForm(Form):
    role = SelectField("Role", choices=ROLE_CHOICES, render_kw={"class": "form-select"})
    disabled = BooleanField(
        "Disabled", render_kw={"class": "form-check-input"},
        description="A disabled user cannot log in; their sessions and tokens stop working.",
    )
    password = PasswordField(
        "New password", render_kw={"class": "form-control", "autocomplete": "new-password"},
        description="Blank keeps the current password.",
    )


class AdminUserError(ValueError):
    """Shown on the form by SQLAdmin."""


def _create(username: str, role: Role, password: str, actor: Actor) -> User:
    with session_scope() as session:
        return users.create_user(session, username, role, password, actor=actor)


def _update(
    username: str, role: Role, disabled: bool, password: str | None, actor: Actor
) -> User:
    with session_scope() as session:
        users.set_role(session, username, role, actor=actor)
        users.set_disabled(session, username, disabled, actor=actor)
        if password:
            users.set_password(session, username, password, actor=actor)
        return users.get_user(session, username)


class UserView(AddressIds, ModelView, model=User):
    name = "User"
    name_plural = "Users"
    icon = "fa-solid fa-users"
    can_delete = False  # disable instead: the audit trail keeps naming the user
    can_export = False
    column_list = [User.username, User.role, User.disabled, User.last_login_at, User.created_at]
    column_details_list = column_list
    column_labels = {
        User.username: "Username", User.role: "Role", User.disabled: "Disabled",
        User.last_login_at: "Last login", User.created_at: "Created",
    }
    column_searchable_list = [User.username]
    column_sortable_list = [User.username]
    column_default_sort = [(User.username, False)]
    column_type_formatters = TYPE_FORMATTERS
    list_template = "user_list.html"

    async def scaffold_form(self, rules: list[str] | None = None) -> type[Form]:
        return UserCreateForm if rules and "username" in rules else UserEditForm

    form_create_rules = ["username", "role", "password"]
    form_edit_rules = ["role", "disabled", "password"]

    async def get_form_data_for_edit(self, obj: User) -> dict[str, Any]:
        return {"role": obj.role, "disabled": obj.disabled}

    async def insert_model(self, request: Request, data: dict[str, Any]) -> User:
        password = data.get("password") or ""
        generated = not password
        if generated:
            password = generate_password()
        try:
            user = await run_in_threadpool(
                _create, data["username"], Role(data["role"]), password, request_actor(request)
            )
        except users.UserError as error:
            raise AdminUserError(str(error)) from None
        if generated:
            notify(request, FlashLevel.warning,
                   f"User '{user.username}' added. One-time password (shown only now): {password}")
        return user

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> User:
        user = await self.get_object_for_edit(request)
        try:
            return await run_in_threadpool(
                _update, user.username, Role(data["role"]), bool(data.get("disabled")),
                data.get("password") or None, request_actor(request),
            )
        except users.UserError as error:
            raise AdminUserError(str(error)) from None
