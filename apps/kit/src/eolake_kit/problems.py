"""RFC 9457 problem details for every error the service answers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING

import orjson
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from eolake_kit.logs import request_id

if TYPE_CHECKING:  # FastAPI is imported by the apps that install the handlers; problem() itself needs none of it
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError

MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("eolake.errors")


def problem(
    status: int, detail: str, *, title: str | None = None, headers: Mapping[str, str] | None = None, **extra: object
) -> Response:
    body: dict[str, object] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    if rid := request_id.get():
        body["request_id"] = rid
    return Response(orjson.dumps(body, default=str), status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    return [{"location": ".".join(map(str, e.get("loc", ()))), "message": e.get("msg", "")} for e in exc.errors()]


def install_problem_handlers(app: FastAPI, status_codes: dict[type[Exception], int] | None = None) -> None:
    """Turn HTTP errors, validation errors and mapped exceptions into problem+json (crashes: ObserveMiddleware)."""
    from fastapi.exceptions import RequestValidationError

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    async def invalid_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = _validation_errors(exc)
        summary = "; ".join(f"{e['location']}: {e['message']}" for e in errors[:5])
        return problem(400, f"invalid request: {summary}", errors=errors)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    for exc_type, status in (status_codes or {}).items():
        app.add_exception_handler(exc_type, _mapped(status))


def _mapped(status: int) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handler(request: Request, exc: Exception) -> Response:
        if status >= 500:
            log.error("request failed: %s", exc, exc_info=exc)
            return problem(status, "internal error; quote the request id when reporting it")
        return problem(status, str(exc) or HTTPStatus(status).phrase, title=exc.__class__.__name__)

    return handler
