"""Redis unreachable (refused, hanging, dropped mid-run): no 500, per-process limits, /health
says "degraded", a metric says so, and the gateway recovers by itself when Redis is back."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import httpx
import openai
import pytest

from distillery.gateway.server import free_port

MSG = [{"role": "user", "content": "hi"}]
TIMEOUT_S, RETRY_S = 0.3, 0.2


class Listener:
    """A TCP listener on a fixed port: a proxy to Redis, or (target None) a server that
    accepts and never answers. stop() closes the port and every connection."""

    def __init__(self, target: int | None = None):
        self.target, self.port = target, free_port()
        self.socks: list[socket.socket] = []

    def start(self) -> Listener:
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", self.port))
        self.lsock.listen(64)
        self.lsock.settimeout(0.05)
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while self.running:
            try:
                c, _ = self.lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.socks.append(c)
            if self.target is not None:
                u = socket.create_connection(("127.0.0.1", self.target))
                self.socks.append(u)
                for a, b in ((c, u), (u, c)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self.running = False
        self.lsock.close()
        for s in self.socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self.socks.clear()


def gateway(make_live, port: int, prefix: str):
    return make_live(redis_url=f"redis://127.0.0.1:{port}/0", redis_prefix=prefix,
                     redis_timeout_s=TIMEOUT_S, redis_retry_s=RETRY_S)


def health(lv) -> str:
    return httpx.get(lv.server.base_url + "/health").json()["status"]


def degraded_metric(lv) -> str:
    m = httpx.get(lv.server.base_url + "/metrics", headers={
        "Authorization": f"Bearer {lv.gateway.config.admin_token}"}).text
    return next(line for line in m.splitlines()
                if line.startswith("distillery_ratelimit_degraded "))


def serves_with_local_limits(lv, max_s: float) -> None:
    """Answers (no 500), each within max_s, and still enforces rpm, in process."""
    c = lv.client(key=lv.new_key("bob", rpm_limit=3))
    for _ in range(3):
        t = time.perf_counter()
        c.chat.completions.create(model="fake", messages=MSG, max_tokens=2)
        assert time.perf_counter() - t < max_s
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="fake", messages=MSG, max_tokens=2)
    assert int(e.value.response.headers["Retry-After"]) == 20


def test_redis_refused_falls_back_to_local_limits(make_live, redis_prefix):
    lv = gateway(make_live, free_port(), redis_prefix)  # nothing listens there
    serves_with_local_limits(lv, max_s=TIMEOUT_S + 0.7)
    assert health(lv) == "degraded"
    assert degraded_metric(lv).endswith(" 1.0")
    assert {r["status_code"] for r in lv.rows()} == {200, 429}


def test_redis_hanging_is_bounded_by_the_timeout(make_live, redis_prefix):
    hang = Listener().start()  # accepts, never answers
    try:
        lv = gateway(make_live, hang.port, redis_prefix)
        serves_with_local_limits(lv, max_s=TIMEOUT_S + 0.7)
        assert health(lv) == "degraded"
    finally:
        hang.stop()


def test_redis_dropped_mid_run_then_back(make_live, redis_prefix):
    proxy = Listener(target=6379).start()
    try:
        lv = gateway(make_live, proxy.port, redis_prefix)
        c = lv.client()
        c.chat.completions.create(model="fake", messages=MSG, max_tokens=2)
        assert health(lv) == "ok" and degraded_metric(lv).endswith(" 0.0")
        proxy.stop()  # connections cut, port closed
        for _ in range(5):
            c.chat.completions.create(model="fake", messages=MSG, max_tokens=2)
        assert health(lv) == "degraded" and degraded_metric(lv).endswith(" 1.0")
        proxy.start()  # Redis is back on the same address
        deadline = time.monotonic() + 10
        while health(lv) != "ok":
            assert time.monotonic() < deadline, "did not recover"
            c.chat.completions.create(model="fake", messages=MSG, max_tokens=2)
            time.sleep(RETRY_S / 2)
        assert degraded_metric(lv).endswith(" 0.0")
        assert {r["status_code"] for r in lv.rows()} == {200}
    finally:
        proxy.stop()
