"""The OpenAI-compatible routes: thin, over GatewayService."""

from __future__ import annotations

import math
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from distillery.gateway.errors import APIError
from distillery.gateway.middleware import UsageContext
from distillery.gateway.openapi import V1_ERRORS
from distillery.gateway.schemas import ChatCompletionRequest, CompletionRequest
from distillery.store.accounts import KeyIdentity

router = APIRouter(prefix="/v1", responses=V1_ERRORS)

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# stream=true answers server-sent events: say so in the schema beside the JSON
_STREAMS = {200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}}


async def _admit(request: Request) -> tuple[KeyIdentity, UsageContext]:
    """The key's rate limits (the middleware has authenticated the key, before the body)."""
    gw = request.app.state.gateway
    ctx: UsageContext = request.state.usage
    ident: KeyIdentity = ctx.ident
    retry = await gw.limiter.check(ident.key_id, gw.limits_for(ident))
    if retry is not None:
        wait = max(1, math.ceil(retry))  # whole seconds, rounded up: a retry then succeeds
        raise APIError(429, f"rate limit reached for key {ident.key_id}; retry in {wait} s",
                       "rate_limit_exceeded", headers={"Retry-After": str(wait)})
    return ident, ctx


@router.post("/chat/completions", responses=_STREAMS)
async def chat_completions(body: ChatCompletionRequest, request: Request):
    ident, ctx = await _admit(request)
    svc = request.app.state.gateway.service
    ctx.model = body.model
    requests = await svc.chat_requests(body, ident, ctx)
    job = svc.submit(requests, body.stream)
    if body.stream:
        return StreamingResponse(svc.stream(job, ident, ctx, ctx.request_id, True, body.n,
                                            include_usage=body.include_usage),
                                 media_type="text/event-stream", headers=_SSE_HEADERS)
    return JSONResponse(await svc.chat_response(job, ident, ctx, ctx.request_id))


@router.post("/completions", responses=_STREAMS)
async def completions(body: CompletionRequest, request: Request):
    ident, ctx = await _admit(request)
    svc = request.app.state.gateway.service
    ctx.model = body.model
    requests = await svc.completion_requests(body, ident, ctx)
    job = svc.submit(requests, body.stream)
    with_top = bool(body.logprobs)
    if body.stream:
        return StreamingResponse(svc.stream(job, ident, ctx, ctx.request_id, False, body.n,
                                            with_top, body.include_usage),
                                 media_type="text/event-stream", headers=_SSE_HEADERS)
    return JSONResponse(await svc.completion_response(job, ident, ctx, ctx.request_id,
                                                      with_top))


def _model_card(name: str) -> dict:
    return {"id": name, "object": "model", "created": int(time.time()), "owned_by": "distillery"}


@router.get("/models")
async def list_models(request: Request):
    await _admit(request)
    return {"object": "list", "data": [_model_card(request.app.state.gateway.engine.model_name)]}


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, request: Request):
    await _admit(request)
    name = request.app.state.gateway.engine.model_name
    if model_id != name:
        raise APIError(404, f"model {model_id!r} does not exist: this server serves {name!r}",
                       "model_not_found")
    return _model_card(name)
