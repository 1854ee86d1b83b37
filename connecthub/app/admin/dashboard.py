"""The admin's home page: ConnectHub's health at a glance (`deployments.health.snapshot`).

`ConnectHubAdmin` is SQLAdmin's `Admin` with its index replaced by the dashboard: workers online
for the pool, failing jobs, late runs, the last sync/reconcile pass and its error, failing alert
deliveries, and the runs per hour of the last day as an inline SVG bar chart (no script). The
page refreshes itself every 15 s, so a dead worker shows without a reload.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup
from sqladmin import Admin
from sqladmin.authentication import login_required
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from connecthub.app.admin.formatting import flow_run_url, format_time
from deployments.health import HourBucket, snapshot

REFRESH_SECONDS = 15
CHART_WIDTH, CHART_HEIGHT, BAR_GAP = 480, 80, 2


def runs_chart(buckets: list[HourBucket]) -> Markup:
    """Stacked bars (succeeded, failed, other) per hour, as inline SVG."""
    tallest = max((bucket.total for bucket in buckets), default=0) or 1
    width = CHART_WIDTH / max(len(buckets), 1)
    bars = []
    for index, bucket in enumerate(buckets):
        bottom = CHART_HEIGHT
        for count, color in ((bucket.succeeded, "#2fb344"), (bucket.failed, "#d63939"),
                             (bucket.other, "#9ba9be")):
            height = CHART_HEIGHT * count / tallest
            bottom -= height
            if count:
                bars.append(Markup(
                    '<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}">'
                    "<title>{:%H}:00 UTC: {} succeeded, {} failed, {} other</title></rect>"
                ).format(index * width, bottom, width - BAR_GAP, height, color, bucket.hour,
                         bucket.succeeded, bucket.failed, bucket.other))
    return Markup(
        '<svg id="runs-chart" role="img" aria-label="Runs per hour, last 24 hours" '
        'width="{}" height="{}" viewBox="0 0 {} {}">{}</svg>'
    ).format(CHART_WIDTH, CHART_HEIGHT, CHART_WIDTH, CHART_HEIGHT, Markup("").join(bars))


class ConnectHubAdmin(Admin):
    """SQLAdmin with the dashboard as its home page."""

    @login_required
    async def index(self, request: Request) -> Response:
        health = await run_in_threadpool(snapshot)
        context: dict[str, Any] = {
            "health": health,
            "chart": runs_chart(health.runs_per_hour),
            "refresh_seconds": REFRESH_SECONDS,
            "flow_run_url": flow_run_url,
            "format_time": format_time,
        }
        return await self.templates.TemplateResponse(request, "dashboard.html", context)
