"""The OpenAPI schema as this server really behaves: its configured limits (n, max_tokens)
and the status codes it answers (400 for invalid input, as OpenAI; never 422)."""

from __future__ import annotations

import copy

from fastapi import FastAPI
from pydantic import BaseModel

from distillery.gateway.config import ServeConfig


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error shape."""

    error: ErrorDetail


def _err(description: str) -> dict:
    return {"model": ErrorResponse, "description": description}


# every route under /v1 (the middleware authenticates, sizes and times the body)
V1_ERRORS = {400: _err("invalid request"), 401: _err("missing or invalid API key"),
             403: _err("account blocked"), 404: _err("unknown model or route"),
             408: _err("the request body did not arrive in time"),
             413: _err("request body too large"), 429: _err("rate limit; see Retry-After"),
             500: _err("server error"), 503: _err("at capacity; see Retry-After")}
ADMIN_ERRORS = {400: _err("invalid request"), 401: _err("invalid admin token"),
                403: _err("admin routes disabled"), 404: _err("no such account or key"),
                408: _err("the request body did not arrive in time"),
                500: _err("server error")}


def _set_max(prop: dict, maximum: int) -> None:
    """Set `maximum` on the integer branch of a property (plain or Optional's anyOf)."""
    for branch in [prop, *prop.get("anyOf", [])]:
        if branch.get("type") == "integer":
            branch["maximum"] = min(maximum, branch.get("maximum", maximum))


def openapi_schema(app: FastAPI, config: ServeConfig) -> dict:
    schema = copy.deepcopy(app.openapi())
    models = schema.get("components", {}).get("schemas", {})
    for name in ("ChatCompletionRequest", "CompletionRequest"):
        props = models.get(name, {}).get("properties", {})
        if "n" in props:
            _set_max(props["n"], config.max_n)
        for field in ("max_tokens", "max_completion_tokens"):
            if field in props:
                _set_max(props[field], config.max_tokens_limit)
    for ops in schema.get("paths", {}).values():
        for op in ops.values():
            op.get("responses", {}).pop("422", None)  # invalid input is a 400 here
    for name in ("HTTPValidationError", "ValidationError"):
        models.pop(name, None)
    return schema
