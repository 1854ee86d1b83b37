"""The admin's Audit trail page: read-only, newest first, filtered by action, searched by exact
actor or target (an indexed lookup). Admins only (see `permissions`)."""

from __future__ import annotations

import json
from typing import Any

from sqladmin import ModelView
from sqlalchemy import Select, or_
from starlette.requests import Request

from connecthub.app.admin.formatting import TYPE_FORMATTERS, format_time
from connecthub.app.admin.views import AddressIds
from connecthub.db.audit import ACTIONS
from connecthub.db.models import AuditEntry


class ActionFilter:
    """Filter by action (a fixed list: no query)."""

    has_operator = False
    template = "sqladmin/filters/lookup_filter.html"
    title = "Action"
    parameter_name = "action"

    async def lookups(self, request: Request, model: Any, run_query: Any) -> list[tuple[str, str]]:
        return [("__all", "All"), *((action, action) for action in ACTIONS)]

    async def get_filtered_query(self, query: Select, value: Any, model: Any) -> Select:
        return query.where(AuditEntry.action == value) if value in ACTIONS else query


class AuditView(AddressIds, ModelView, model=AuditEntry):
    name = "Audit entry"
    name_plural = "Audit trail"
    icon = "fa-solid fa-clipboard-list"
    can_create = can_edit = can_delete = can_export = False
    column_list = [AuditEntry.id, AuditEntry.at, AuditEntry.actor, AuditEntry.address,
                   AuditEntry.action, AuditEntry.target, AuditEntry.details]
    column_details_list = column_list
    column_labels = {AuditEntry.at: "When (UTC)", AuditEntry.actor: "Who",
                     AuditEntry.address: "From", AuditEntry.action: "Action",
                     AuditEntry.target: "What", AuditEntry.details: "Details"}
    column_formatters = {
        AuditEntry.at: lambda entry, _name: format_time(entry.at)[:19],
        AuditEntry.details: lambda entry, _name: (
            json.dumps(entry.details, default=str)[:300] if entry.details else ""
        ),
    }
    column_type_formatters = TYPE_FORMATTERS
    column_sortable_list = [AuditEntry.id]
    column_default_sort = [(AuditEntry.id, True)]
    column_filters = [ActionFilter()]
    column_searchable_list = [AuditEntry.actor, AuditEntry.target]

    def search_placeholder(self) -> str:
        return "exact user or target"

    def search_query(self, stmt: Select, term: str) -> Select:
        value = term.strip()
        return stmt.where(or_(AuditEntry.actor == value, AuditEntry.target == value))
