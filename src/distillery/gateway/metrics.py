"""Prometheus metrics, in a registry per app (several apps may live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (.001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("distillery_requests", "HTTP requests under /v1",
                                ["route", "status"], registry=r)
        self.latency = Histogram("distillery_request_seconds", "request latency (to last byte)",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("distillery_tokens", "tokens processed", ["kind"], registry=r)
        self.account_requests = Counter("distillery_account_requests", "requests per account",
                                        ["account", "status"], registry=r)
        self.account_tokens = Counter("distillery_account_tokens",
                                      "completion+prompt tokens per account", ["account"],
                                      registry=r)
        self.queue_depth = Gauge("distillery_queue_depth", "requests waiting for the engine",
                                 registry=r)
        self.usage_backlog = Gauge("distillery_usage_backlog", "usage rows not yet written",
                                   registry=r)
        self.usage_dropped = Gauge("distillery_usage_rows_dropped",
                                   "usage rows the database refused (logged; the others "
                                   "were written)", registry=r)
        self.ratelimit_degraded = Gauge("distillery_ratelimit_degraded",
                                        "1 while Redis is unreachable and rate limits are "
                                        "per process", registry=r)
        self.ratelimit_fallbacks = Gauge("distillery_ratelimit_fallback_requests",
                                         "requests limited in process because Redis was down",
                                         registry=r)
        self.batch_size = Histogram("distillery_batch_requests", "requests per engine call",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)

        # labelled children by label values: `labels()` validates and locks on every call
        self._children: dict[tuple, object] = {}

    def _child(self, metric, *values: str):
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def observe_request(self, route: str, status: int, seconds: float, account: str | None,
                        prompt_tokens: int, completion_tokens: int) -> None:
        """One finished request under /v1 (the middleware calls this with its usage row)."""
        code = str(status)
        self._child(self.requests, route, code).inc()
        self._child(self.latency, route).observe(seconds)
        if account is not None:
            self._child(self.account_requests, account, code).inc()
            if prompt_tokens or completion_tokens:
                self._child(self.account_tokens, account).inc(prompt_tokens + completion_tokens)
        if prompt_tokens:
            self._child(self.tokens, "prompt").inc(prompt_tokens)
        if completion_tokens:
            self._child(self.tokens, "completion").inc(completion_tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)
