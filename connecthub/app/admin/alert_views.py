"""The admin's alert pages: channels (add, delete, list masked) and deliveries (read-only).

A channel is saved through `alerts.add_channel`, which encrypts its URL: the form's URL field
is a password input that never renders a value, and the list and details show only the URL as
apprise masks it. The deliveries list shows each alert's status, attempts and last error
(masked when it was recorded), newest first.
"""

from __future__ import annotations

from typing import Any

from sqladmin import ModelView
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from wtforms import Form
from wtforms.fields import BooleanField, PasswordField, StringField
from wtforms.validators import InputRequired

from connecthub.alerts import ChannelError, add_channel, delete_channel
from connecthub.app.actors import request_actor
from connecthub.app.admin.formatting import TYPE_FORMATTERS, format_time
from connecthub.app.admin.views import AddressIds
from connecthub.db import audit
from connecthub.db.audit import Actor
from connecthub.db.engine import session_scope
from connecthub.db.models import AlertChannel, AlertDelivery


class AlertChannelForm(Form):
    name = StringField(
        "Name", [InputRequired()], render_kw={"class": "form-control"},
        description="Jobs name it in their Alert channels field.",
    )
    url = PasswordField(
        "Apprise URL", [InputRequired()],
        render_kw={"class": "form-control", "autocomplete": "off",
                   "placeholder": "mailto://user:password@smtp.example.com:25?to=ops@example.com"},
        description="mailto://, json://, slack://, msteams://...; stored encrypted, never shown.",
    )
    is_default = BooleanField(
        "Default", render_kw={"class": "form-check-input"},
        description="Jobs that name no channel alert the default channels.",
    )


class AdminChannelError(ValueError):
    """Shown on the form by SQLAdmin."""


def _save(name: str, url: str, default: bool, actor: Actor) -> AlertChannel:
    with session_scope() as session:
        channel = add_channel(session, name, url, default=default)
        audit.record(session, actor, "alert_channel.add", channel.name, {"default": default})
        return channel


def _delete(name: str, actor: Actor) -> None:
    with session_scope() as session:
        delete_channel(session, name)
        audit.record(session, actor, "alert_channel.delete", name)


class AlertChannelView(AddressIds, ModelView, model=AlertChannel):
    name = "Alert channel"
    name_plural = "Alert channels"
    icon = "fa-solid fa-bell"
    can_edit = False  # to change a URL, add the channel again under the same name
    can_export = False
    column_list = [AlertChannel.name, AlertChannel.is_default, AlertChannel.masked_url]
    column_details_list = [
        AlertChannel.name, AlertChannel.is_default, AlertChannel.masked_url,
        AlertChannel.created_at,
    ]
    column_labels = {
        AlertChannel.name: "Name", AlertChannel.is_default: "Default",
        AlertChannel.masked_url: "URL (masked)", AlertChannel.created_at: "Created",
    }
    column_type_formatters = TYPE_FORMATTERS
    form = AlertChannelForm

    async def scaffold_form(self, rules: list[str] | None = None) -> type[Form]:
        return AlertChannelForm

    async def insert_model(self, request: Request, data: dict[str, Any]) -> AlertChannel:
        try:
            return await run_in_threadpool(
                _save, data["name"], data["url"], bool(data.get("is_default")),
                request_actor(request),
            )
        except ChannelError as error:
            raise AdminChannelError(str(error)) from None

    async def delete_model(self, request: Request, pk: Any) -> None:
        try:
            await run_in_threadpool(_delete, str(pk), request_actor(request))
        except ChannelError as error:
            raise AdminChannelError(str(error)) from None


class AlertDeliveryView(AddressIds, ModelView, model=AlertDelivery):
    name = "Alert delivery"
    name_plural = "Alert deliveries"
    icon = "fa-solid fa-paper-plane"
    can_create = can_edit = can_delete = can_export = False
    column_list = [
        AlertDelivery.id, AlertDelivery.kind, AlertDelivery.job_id, AlertDelivery.channel,
        AlertDelivery.status, AlertDelivery.attempts, AlertDelivery.last_error,
        AlertDelivery.created_at,
    ]
    column_details_exclude_list = [AlertDelivery.event_key]
    column_sortable_list = [AlertDelivery.id]
    column_default_sort = [(AlertDelivery.id, True)]
    column_formatters = {
        AlertDelivery.created_at: lambda delivery, _name: format_time(delivery.created_at)[:16],
    }
    column_type_formatters = TYPE_FORMATTERS
