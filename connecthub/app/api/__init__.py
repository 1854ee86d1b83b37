"""The REST API at /api/v1: FastAPI, authenticated by API tokens, with its OpenAPI document at
/api/v1/openapi.json (and the interactive docs at /api/v1/docs).

Routes: /health (no token), /jobs, /jobs/{id}/runs, /logs, /logs/{id}/retry, /audit. Each route
names its least role (`deps.Viewer`, `Operator`, `Admin`); errors are JSON (`errors`), and a
body over 1 MiB is refused with 413.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from connecthub.app.api import audit, jobs, runs
from connecthub.app.api.errors import ERROR_RESPONSES, BodySizeLimit, install_error_handlers
from connecthub.db.engine import database_reachable

__all__ = ["create_api"]

health_router = APIRouter(tags=["health"])


@health_router.get("/health", summary="Whether the API and its database answer (no token)")
async def health() -> JSONResponse:
    if await run_in_threadpool(database_reachable):
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)


def create_api() -> FastAPI:
    api = FastAPI(
        title="ConnectHub API", version="1",
        description="Jobs, runs, the JobLog and the audit trail. Authenticate with an API "
        "token (`connecthub tokens create --user NAME`): `Authorization: Bearer <token>`.",
        openapi_url="/openapi.json", docs_url="/docs", redoc_url=None,
        responses=ERROR_RESPONSES,
    )
    install_error_handlers(api)
    api.add_middleware(BodySizeLimit)
    api.include_router(health_router)
    api.include_router(jobs.router)
    api.include_router(runs.router)
    api.include_router(audit.router)
    return api
