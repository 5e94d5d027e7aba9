"""One ASGI middleware for /v1: request id, authentication, body size and time limits, usage
row, metrics.

Order: the API key is checked (401/403) before a byte of the body is read or parsed. The
request id is always the server's own (unique: the usage row's identity); a client's
X-Request-ID is kept as data (`client_request_id`), since clients repeat them. The body must
arrive within `body_timeout_s` of the headers, else 408 and the connection is closed (the
headers' own bound is in server.py).

Pure ASGI (no BaseHTTPMiddleware): it adds a few microseconds, and it sees the last byte of
a streamed response. The usage row is queued just before that last byte leaves, so a
response a client has received always has its row queued (and the writer flushes the queue
at shutdown). A request that ends without a last byte (client gone, crash) is recorded too.

Client disconnect: once the app has read the request body, a watcher task waits on the
server's `receive` (which returns `http.disconnect` when the connection drops, or when the
response is complete). A drop before the last byte cancels the request's task, so the
handler stops awaiting the engine and cancels its job (see batcher.py); the row is recorded
with status 499 (nginx's "client closed request") and error_type "client_closed".
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from distillery.gateway.auth import check_admin
from distillery.gateway.errors import APIError, error_body

log = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
ROUTES = {"/v1/chat/completions", "/v1/completions", "/v1/models"}
CLIENT_CLOSED = 499  # nginx's code: the client went away before the response ended
TIMED_OUT = object()  # _read_chunked: the body did not arrive in time
# request ids: a random per-process prefix and a counter (uuid4 reads urandom per request)
_RID_PREFIX = secrets.token_hex(8)
_rid_counter = itertools.count()


@dataclass
class UsageContext:
    """Filled by the handlers as a request goes; becomes one usage row."""

    request_id: str
    client_request_id: str | None = None
    ident: object = None  # the caller's KeyIdentity, once authenticated
    account_id: int | None = None
    account: str | None = None
    key_id: str | None = None
    model: str | None = None
    error_type: str | None = None
    prompt: object = None
    responses: list[str] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    sampling: dict = field(default_factory=dict)  # n, max_tokens, temperature, top_p, seed
    params: dict | None = None
    stream: bool = False
    logprobs: bool = False
    top_logprobs: int | None = None
    watermark_scheme: str | None = None
    watermark_key_id: str | None = None
    # set by the middleware: record the row now (a stream calls it before its last event,
    # so that a client never holds a complete answer whose row is not queued)
    finish: object = None


def _sha256(obj: object) -> str | None:
    if obj is None:
        return None
    data = obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()


def _sim_time(value: bytes) -> datetime | None:
    """A replayed request's simulated time (unix seconds); None when unreadable."""
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (ValueError, OverflowError, OSError):
        return None


class GatewayMiddleware:
    def __init__(self, app: ASGIApp, gateway) -> None:
        self.app = app
        self.gw = gateway  # the Gateway (state): config, usage writer, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not scope["path"].startswith("/v1"):
            await self._operator_route(scope, receive, send)
            return
        started_wall, t0 = datetime.now(UTC), time.perf_counter()
        headers = dict(scope["headers"])
        if self.gw.config.simulated_clock and b"x-distillery-sim-time" in headers:
            started_wall = _sim_time(headers[b"x-distillery-sim-time"]) or started_wall
        client_rid = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = f"{_RID_PREFIX}{next(_rid_counter):08x}"
        ctx = UsageContext(request_id=rid, client_request_id=client_rid
                           if _REQUEST_ID.match(client_rid) else None)
        scope.setdefault("state", {})["usage"] = ctx
        status = [0]
        done = [False]
        gone = [False]  # the client dropped the connection before the last byte
        timed_out = [False]  # the body did not arrive in time: the answer is our 408
        body_deadline = time.monotonic() + self.gw.config.body_timeout_s
        rid_header = (b"x-request-id", rid.encode())
        task = asyncio.current_task()
        disconnected: asyncio.Event | None = None  # made when the app listens (streaming)
        watcher: asyncio.Task | None = None
        body_source = receive  # the app's body: the server's receive, or a replay

        def finish() -> None:
            if not done[0]:
                done[0] = True
                if gone[0]:  # the app answered a client already gone (FastAPI: 400)
                    status[0], ctx.error_type = CLIENT_CLOSED, "client_closed"
                self._record(scope, headers, ctx, status[0], started_wall, t0)

        ctx.finish = finish

        async def send_wrapper(message: Message) -> None:
            if timed_out[0] or gone[0]:
                if gone[0] and message["type"] == "http.response.body" and not message.get(
                        "more_body"):
                    finish()
                return  # the app's answer to a body it never got: ours is sent instead
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), rid_header]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finish()
            await send(message)

        async def watch() -> None:
            nonlocal disconnected
            while (await receive())["type"] != "http.disconnect":
                pass
            if disconnected is None:
                disconnected = asyncio.Event()
            disconnected.set()  # what an app that listens for it hears
            if not done[0]:
                gone[0] = True
                task.cancel()

        async def receive_watched() -> Message:
            nonlocal watcher, disconnected
            if watcher is not None:  # body read: only a disconnect can come
                if disconnected is None:
                    disconnected = asyncio.Event()
                await disconnected.wait()
                return {"type": "http.disconnect"}
            message = await self._timed(body_source, body_deadline)
            if message is None:  # too slow: the app sees a disconnect, the client our 408
                timed_out[0] = True
                return {"type": "http.disconnect"}
            if message["type"] == "http.disconnect":
                gone[0] = True
            elif not message.get("more_body"):
                watcher = asyncio.ensure_future(watch())
            return message

        try:
            try:
                ctx.ident = await self._authenticate(headers, ctx)
            except APIError as e:
                ctx.error_type = e.code or e.type
                await self._reject(send_wrapper, e.status, e.message, e.code, e.headers)
                return
            limit = self.gw.config.max_body_bytes
            length = headers.get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                await self._reject_too_large(send_wrapper, ctx, limit)
                return
            if length is None and scope["method"] in ("POST", "PUT", "PATCH"):
                # chunked: read it here (up to the limit), then replay it to the app
                body = await self._read_chunked(receive, limit, body_deadline)
                if body is None:
                    gone[0] = True
                    return
                if body is TIMED_OUT:
                    timed_out[0] = True
                    return
                if len(body) > limit:
                    await self._reject_too_large(send_wrapper, ctx, limit)
                    return

                async def replay() -> Message:
                    return {"type": "http.request", "body": bytes(body), "more_body": False}

                body_source = replay
            await self.app(scope, receive_watched, send_wrapper)
        except asyncio.CancelledError:
            if not gone[0]:
                raise
            task.uncancel()  # our own cancel (watch): the client is gone, nothing to answer
        except Exception as e:
            # (a client gone mid-body makes the app raise ClientDisconnect)
            if not gone[0] and not timed_out[0]:
                log.error("unhandled %s on %s %s (request %s)", type(e).__name__,
                          scope["method"], scope["path"], rid, exc_info=e)
                ctx.error_type = "internal_error"
                if not status[0]:
                    await self._reject(send_wrapper, 500, "internal server error; the "
                                       "request id is in the x-request-id header",
                                       "internal_error")
        finally:
            if timed_out[0] and not done[0]:
                timed_out[0] = False  # let our own answer through
                ctx.error_type = "request_timeout"
                await self._reject(send_wrapper, 408, "the request body did not arrive "
                                   f"within {self.gw.config.body_timeout_s:g} s", "timeout",
                                   close=True)
            if not done[0]:  # no last byte sent: a crash, or the client went away
                done[0] = True
                if gone[0] or (status[0] and status[0] < 400):
                    code = CLIENT_CLOSED
                else:
                    code = status[0] or 500
                ctx.error_type = ctx.error_type or ("client_closed" if code == CLIENT_CLOSED
                                                    else "internal_error")
                self._record(scope, headers, ctx, code, started_wall, t0)

    async def _operator_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        """/admin, /health, /metrics: no usage row, but the same rules on the body: the admin
        token is checked before it is read, and it must arrive within body_timeout_s."""
        cfg = self.gw.config
        if scope["path"].startswith("/admin"):
            try:
                check_admin(cfg.admin_token, dict(scope["headers"]).get(
                    b"authorization", b"").decode("latin-1"))
            except APIError as e:
                await self._reject(send, e.status, e.message, e.code)
                return
        deadline = time.monotonic() + cfg.body_timeout_s
        timed_out, started, body_done = [False], [False], [False]

        async def timed_receive() -> Message:
            if body_done[0]:  # only a disconnect can come: no deadline on that
                return await receive()
            message = await self._timed(receive, deadline)
            if message is None:
                timed_out[0] = True
                return {"type": "http.disconnect"}
            body_done[0] = not message.get("more_body")
            return message

        async def guarded_send(message: Message) -> None:
            if not timed_out[0]:
                started[0] = True
                await send(message)

        await self.app(scope, timed_receive, guarded_send)
        if timed_out[0] and not started[0]:
            await self._reject(send, 408, "the request body did not arrive within "
                               f"{cfg.body_timeout_s:g} s", "timeout", close=True)

    async def _authenticate(self, headers: dict, ctx: UsageContext):
        """The caller's key and account, before the body is read (401, 403 as APIError)."""
        auth = self.gw.auth
        ident = await auth.identify(headers.get(b"authorization", b"").decode("latin-1"))
        ctx.account_id, ctx.account, ctx.key_id = ident.account_id, ident.account, ident.key_id
        auth.enforce_status(ident)
        return ident

    @staticmethod
    async def _timed(receive: Receive, deadline: float) -> Message | None:
        """The next message, or None if it does not come before `deadline`."""
        try:  # (asyncio.timeout, not wait_for: no task made per message)
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                return await receive()
        except TimeoutError:
            return None

    async def _read_chunked(self, receive: Receive, limit: int, deadline: float
                            ) -> bytearray | object | None:
        """The whole body, or as soon as it passes `limit`; None if the client left,
        TIMED_OUT if the body did not arrive by `deadline`."""
        body = bytearray()
        while True:
            message = await self._timed(receive, deadline)
            if message is None:
                return TIMED_OUT
            if message["type"] != "http.request":
                return None
            body += message.get("body", b"")
            if len(body) > limit or not message.get("more_body"):
                return body

    async def _reject_too_large(self, send: Send, ctx: UsageContext, limit: int) -> None:
        ctx.error_type = "request_too_large"
        await self._reject(send, 413, f"request body too large: the limit is {limit} bytes",
                           "request_too_large")

    async def _reject(self, send: Send, status: int, message: str, code: str | None,
                      headers: dict[str, str] | None = None, close: bool = False) -> None:
        body = error_body(status, message, code)
        extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        if close:  # uvicorn closes the connection after this response
            extra.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), *extra]})
        await send({"type": "http.response.body", "body": body})

    def _record(self, scope: Scope, headers: dict, ctx: UsageContext, status: int,
                started: datetime, t0: float) -> None:
        try:
            self._record_row(scope, headers, ctx, status, started, t0)
        except Exception:  # never break a response over bookkeeping; say so loudly
            log.exception("failed to record usage of request %s", ctx.request_id)

    def _record_row(self, scope: Scope, headers: dict, ctx: UsageContext, status: int,
                    started: datetime, t0: float) -> None:
        elapsed = time.perf_counter() - t0
        path = scope["path"]
        route = path if path in ROUTES else "other"
        keep_text = self.gw.config.store_text
        client = scope.get("client")
        if status >= 400 and ctx.error_type is None:
            ctx.error_type = str(status)
        row = {
            "request_id": ctx.request_id, "client_request_id": ctx.client_request_id,
            "account_id": ctx.account_id, "key_id": ctx.key_id,
            "created_at": started, "finished_at": started + timedelta(seconds=elapsed),
            "method": scope["method"][:8], "route": path[:64], "model": ctx.model,
            "status_code": status, "error_type": ctx.error_type,
            "prompt": ctx.prompt if keep_text else None, "prompt_sha256": _sha256(ctx.prompt),
            "responses": ctx.responses if keep_text else None,
            "responses_sha256": _sha256(ctx.responses),
            "prompt_tokens": ctx.prompt_tokens, "completion_tokens": ctx.completion_tokens,
            "n": ctx.sampling.get("n"), "max_tokens": ctx.sampling.get("max_tokens"),
            "temperature": ctx.sampling.get("temperature"), "top_p": ctx.sampling.get("top_p"),
            "seed": ctx.sampling.get("seed"), "params": ctx.params, "stream": ctx.stream,
            "logprobs": ctx.logprobs, "top_logprobs": ctx.top_logprobs,
            "watermark_scheme": ctx.watermark_scheme, "watermark_key_id": ctx.watermark_key_id,
            "latency_ms": elapsed * 1000,
            "client_addr": f"{client[0]}"[:64] if client else None,
            "user_agent": headers.get(b"user-agent", b"").decode("latin-1")[:256] or None,
        }
        self.gw.usage.record(row)
        self.gw.metrics.observe_request(route, status, elapsed, ctx.account, ctx.prompt_tokens,
                                        ctx.completion_tokens)
