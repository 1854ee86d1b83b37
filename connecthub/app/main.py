"""The ConnectHub web app: the admin UI at /admin, the REST API at /api/v1 and a health check
at /healthz.

Run it with `uvicorn connecthub.app.main:app` (or `--factory connecthub.app.main:create_app`).
At start it runs `bootstrap.prepare()` (logging, a current schema, a key file that reads the
stored secrets: it refuses to start otherwise) and logs where the admin login is found.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from connecthub.app.admin import AdminAuth, mount_admin
from connecthub.app.api import create_api
from connecthub.app.api.errors import error_response
from connecthub.bootstrap import prepare
from connecthub.db.engine import database_reachable

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


async def healthz() -> JSONResponse:
    """200 when the app is up and its database answers; 503 otherwise."""
    if await run_in_threadpool(database_reachable):
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)


async def not_found(request: Request, error: Exception) -> Response:
    """A 404 of the outer app (a path no mount matches, e.g. one holding a newline): in the
    API's own shape under the API's prefix."""
    assert isinstance(error, StarletteHTTPException)
    if request.url.path.startswith(API_PREFIX):
        return error_response(error.status_code, str(error.detail))
    return await http_exception_handler(request, error)


def create_app() -> FastAPI:
    auth = AdminAuth()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(prepare)
        logger.info(await run_in_threadpool(auth.prepare))
        yield

    app = FastAPI(
        title="ConnectHub", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    app.add_api_route(
        "/",
        lambda: RedirectResponse("/admin/", status_code=307),
        methods=["GET"],
        include_in_schema=False,
    )
    app.add_exception_handler(StarletteHTTPException, not_found)
    app.state.admin = mount_admin(app, auth)
    app.mount(API_PREFIX, create_api())
    return app


app = create_app()
