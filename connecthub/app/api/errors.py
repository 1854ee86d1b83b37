"""The API's errors: always JSON `{"detail": message, "field": name or null}`, never a stack.

- 422 for a request that does not validate: `detail` is the first problem and `field` the field
  it names; `errors` lists every `{field: message}` (a JobSpec's errors are the texts the admin
  shows under its fields).
- HTTP errors keep their status (401, 403, 404, 409, 413, 503) with their message.
- Anything unexpected is a 500 `{"detail": "internal error"}`; the traceback goes to the log only.

`BodySizeLimit` refuses a request body over `MAX_BODY_BYTES` (1 MiB) with 413, before reading it
when Content-Length says so, and while reading it otherwise.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024


class ErrorOut(BaseModel):
    """Every error answer of the API."""

    detail: str
    field: str | None = Field(description="The field the error is about, if one.")
    errors: dict[str, str] | None = Field(
        default=None, description="For 422: every field refused, with its message."
    )


# Documented on every route, in place of FastAPI's own 422 shape, which the API never sends.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in (
        (401, "No API token, or one that is unknown, revoked or expired"),
        (403, "The token's role does not allow this"),
        (404, "Not found"),
        (409, "Conflicts with what exists, or a run that cannot start"),
        (413, "The request body is over 1 MiB"),
        (422, "A field is invalid; `field` names it"),
        (503, "Prefect or the database is unreachable"),
    )
}


def error_response(
    status: int, detail: str, field: str | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse({"detail": detail, "field": field, **extra}, status_code=status)


def validation_error(errors: dict[str, str]) -> JSONResponse:
    """422 for `{field: message}`, the first one as the detail."""
    field, message = next(iter(errors.items()))
    return error_response(422, f"{field}: {message}", field, errors=errors)


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(part) for part in loc if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _request_validation(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors: dict[str, str] = {}
    for item in error.errors():
        errors.setdefault(_field_of(tuple(item.get("loc", ()))), str(item.get("msg", "invalid")))
    return validation_error(errors or {"body": "invalid request"})


async def _http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    detail = error.detail if isinstance(error.detail, str) else json.dumps(error.detail)
    response = error_response(error.status_code, detail)
    for name, value in (error.headers or {}).items():
        response.headers[name] = value
    return response


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    logger.exception("API error on %s %s", request.method, request.url.path)
    return error_response(500, "internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


class BodySizeLimit:
    """413 for a request body over `limit` bytes, declared (Content-Length) or streamed."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                if value.isdigit() and int(value) > self.limit:
                    await self._refuse(scope, receive, send)
                else:  # the server holds the body to its declared length
                    await self.app(scope, receive, send)
                return
        # A streamed body is read whole (at most `limit` bytes) before the app sees it, so
        # that a body too large is refused as such, not as one that failed to parse.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            received += len(chunks[-1])
            if received > self.limit:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, f"The request body is larger than {self.limit // 1024} KiB.", "body"
        )
        await response(scope, receive, send)
