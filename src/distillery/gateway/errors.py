"""OpenAI-shaped errors: {"error": {"message", "type", "param", "code"}}, never a traceback."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger(__name__)

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
          422: "invalid_request_error", 429: "rate_limit_error", 500: "server_error",
          503: "service_unavailable"}


class APIError(Exception):
    """An error the client should see, with its HTTP status."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}
        self.type = _TYPES.get(status, "invalid_request_error")


def error_body(status: int, message: str, code: str | None = None,
               param: str | None = None) -> bytes:
    err = {"message": message, "type": _TYPES.get(status, "invalid_request_error"),
           "param": param, "code": code}
    return json.dumps({"error": err}).encode()


def error_response(status: int, message: str, code: str | None = None, param: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(status, message, code, param), status_code=status,
                    headers=headers, media_type="application/json")


def _validation_message(exc: RequestValidationError) -> tuple[str, str, str | None]:
    """(code, message, param) for an invalid request: OpenAI answers these with 400."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return "invalid_json", "the request body is not valid JSON", None
    parts, param = [], None
    for e in errors[:5]:
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        param = param or where
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "invalid_value", "invalid request: " + "; ".join(parts), param


def _note(req: Request, error_type: str) -> None:
    """Tell the usage row what went wrong."""
    ctx = req.scope.get("state", {}).get("usage")
    if ctx is not None:
        ctx.error_type = error_type[:64]


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(req: Request, exc: APIError) -> Response:
        _note(req, exc.code or exc.type)
        return error_response(exc.status, exc.message, exc.code, exc.param, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(req: Request, exc: RequestValidationError) -> Response:
        code, message, param = _validation_message(exc)
        _note(req, code)
        return error_response(400, message, code, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404:
            message = "no such route: see /docs for this server's routes"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(req: Request, exc: Exception) -> Response:
        log.error("unhandled %s on %s %s", type(exc).__name__, req.method, req.url.path,
                  exc_info=exc)
        return error_response(500, "internal server error; the request id is in the "
                              "x-request-id header", "internal_error")
