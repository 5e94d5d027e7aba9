"""The FastAPI app: the Gateway's parts built in the lifespan, routes, handlers, middleware.

Start-up: migrate the database, start the usage writer, load the engine (or take the one
given), start the batcher, load the watermark key ring. Shut-down (after uvicorn has let
in-flight responses finish): stop the batcher, then write every queued usage row.

Open to anyone: /health only. /metrics (it names every account) and /openapi.json need the
metrics or the admin token; /docs is off unless `public_docs`.
"""

from __future__ import annotations

import gc
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, Response

from distillery.gateway.auth import token_matches
from distillery.gateway.config import ServeConfig
from distillery.gateway.errors import APIError, install_handlers
from distillery.gateway.metrics import GatewayMetrics
from distillery.gateway.middleware import GatewayMiddleware
from distillery.gateway.openapi import openapi_schema
from distillery.gateway.ratelimit import Limits, make_rate_limiter
from distillery.store.accounts import KeyIdentity

log = logging.getLogger(__name__)


def load_engine(config: ServeConfig):
    if config.model == "fake":
        from distillery.gateway.fake import FakeEngine

        return FakeEngine(tokens=config.fake_tokens)
    from distillery.engine import load_engine

    return load_engine(config.model, config.engine, dtype=config.dtype,
                       max_batch_size=config.max_batch_size)


def load_watermark(config: ServeConfig):
    """The key ring, or None for --watermark none."""
    if config.watermark == "none":
        return None
    try:
        from distillery.watermark import KeyRing
    except ImportError as e:
        raise ValueError(f"--watermark {config.watermark} needs distillery.watermark, which "
                         f"is not available ({e}); serve with --watermark none") from None
    return KeyRing.load(config.watermark_key)


class Gateway:
    """Everything a request needs, owned by one app."""

    def __init__(self, config: ServeConfig, engine=None):
        self.config = config
        self.engine = engine
        self.metrics = GatewayMetrics()
        self.db = self.usage = self.batcher = self.auth = self.limiter = self.ring = None
        self.startup_error: BaseException | None = None  # why start() failed, for callers
        self.auditor = None  # gateway/auditor.py, when configured
        self._schemes: dict[str, object] = {}
        from distillery.gateway.service import GatewayService

        self.service = GatewayService(self)

    def start(self) -> None:
        from distillery import store
        from distillery.gateway.auth import Authenticator
        from distillery.gateway.batcher import Batcher

        cfg = self.config
        self.ring = load_watermark(cfg)  # fail fast, before the slow model load
        store.migrate(cfg.database)
        self.db = store.make_engine(cfg.database)
        self.usage = store.UsageWriter(self.db, cfg.usage_batch_size, cfg.usage_interval_s)
        self.auth = Authenticator(self.db, cfg.auth_cache_ttl_s)
        self.limiter = make_rate_limiter(cfg.redis_url, cfg.redis_prefix, cfg.redis_timeout_s,
                                         cfg.redis_retry_s)
        if self.engine is None:
            self.engine = load_engine(cfg)
        self.batcher = Batcher(self.engine, cfg.max_batch_size if cfg.dynamic_batching else 1,
                               cfg.max_queue, cfg.batch_wait_ms,
                               on_batch=self.metrics.batch_size.observe)
        if cfg.audit_calibration:
            from distillery.gateway.auditor import BackgroundAuditor

            self.auditor = BackgroundAuditor.start(self.db, cfg)
        log.info("serving %s (watermark %s, database %s)", self.engine.model_name,
                 cfg.watermark, self.db.url.render_as_string(hide_password=True))

    async def stop(self) -> None:
        if self.auditor is not None:
            self.auditor.close()
        if self.batcher is not None:
            self.batcher.close()
        if self.usage is not None:
            self.usage.close()
            log.info("usage writer closed: %d rows written", self.usage.written)
        if self.limiter is not None:
            await self.limiter.close()
        if self.db is not None:
            self.db.dispose()

    def limits_for(self, ident: KeyIdentity) -> Limits:
        rpm = ident.rpm_limit or self.config.rpm_limit
        tpm = ident.tpm_limit or self.config.tpm_limit
        if ident.status == "throttled":
            f = self.config.throttled_factor
            rpm, tpm = max(1, int(rpm * f)), max(1, int(tpm * f))
        return Limits(rpm, tpm)

    def watermark_for(self, account: str):
        """The account's scheme (one object per account, so the engine batches it once)."""
        if self.ring is None:
            return None
        scheme = self._schemes.get(account)
        if scheme is None:
            from distillery.watermark import make_scheme

            scheme = make_scheme(self.config.watermark, self.ring, account=account,
                                 **self.config.watermark_params)
            self._schemes[account] = scheme
        return scheme


def watermark_key_id(scheme) -> str:
    """The public id recorded in the usage row: the account layer's key (its version inside)."""
    ids = scheme.key_ids
    return ids.get("account") or ids["global"]


def create_app(config: ServeConfig | None = None, engine=None) -> FastAPI:
    config = config or ServeConfig()
    gw = Gateway(config, engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            gw.start()
        except BaseException as e:  # uvicorn logs it; start_in_thread reports it
            gw.startup_error = e
            raise
        # Everything loaded so far (torch, transformers, the model) lives as long as the
        # process: move it out of the collector's reach, or each full collection walks those
        # millions of objects and stalls every request for ~200 ms (BENCHMARKS.md, Gateway).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await gw.stop()

    # FastAPI's OpenTelemetry hooks off: we export Prometheus metrics; on, every request looks
    # up the global OTel providers, and spans would start costing as soon as any is configured
    app = FastAPI(title="distillery gateway", version="0.1.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None,
                  telemetry={"tracing": False, "metrics": False, "logs": False,
                             "operation_spans": False})
    app.state.gateway = gw
    install_handlers(app)
    from distillery.gateway import admin, routes

    app.include_router(routes.router)
    app.include_router(admin.router)

    def check_operator(request: Request) -> None:
        if not token_matches(request.headers.get("authorization"), config.metrics_token,
                             config.admin_token):
            raise APIError(401, "this route needs the metrics or the admin token "
                           "(DISTILLERY_METRICS_TOKEN, DISTILLERY_ADMIN_TOKEN) as a bearer "
                           "token", "invalid_operator_token")

    @app.get("/health", include_in_schema=False)
    async def health():
        """200 while serving. "degraded" (still 200: every process sees the same outage, so a
        load balancer taking them all out would turn it into a full one) while Redis is down
        and rate limits are per process."""
        out: dict = {"status": "ok", "model": gw.engine.model_name if gw.engine else None}
        if gw.limiter is not None and gw.limiter.degraded:
            out.update(status="degraded", degraded=["rate_limits: Redis unreachable; limits "
                                                    "are per process"])
        return out

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request):
        check_operator(request)
        m = gw.metrics
        if gw.batcher is not None:
            m.queue_depth.set(gw.batcher.depth)
        if gw.usage is not None:
            m.usage_backlog.set(gw.usage.backlog)
            m.usage_dropped.set(gw.usage.dropped)
        if gw.limiter is not None:
            m.ratelimit_degraded.set(int(gw.limiter.degraded))
            m.ratelimit_fallbacks.set(getattr(gw.limiter, "fallbacks", 0))
        return Response(m.render(), media_type="text/plain; version=0.0.4")

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request):
        if not config.public_docs:
            check_operator(request)
        return JSONResponse(openapi_schema(app, config))

    if config.public_docs:
        @app.get("/docs", include_in_schema=False)
        async def docs():
            return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)

    app.add_middleware(GatewayMiddleware, gateway=gw)
    return app
