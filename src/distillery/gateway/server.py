"""Run the gateway with uvicorn: in the foreground (`distillery serve`) or in a thread (tests,
benchmarks)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import uvicorn

from distillery.gateway.app import create_app
from distillery.gateway.config import ServeConfig
from distillery.gateway.errors import error_body

GRACEFUL_S = 60  # SIGTERM: stop accepting, let in-flight responses finish for up to this long
_408 = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: %d\r\n\r\n%s")


def _protocol(http: str, header_timeout_s: float) -> type:
    """uvicorn's HTTP protocol, with a bound on the time to receive a request's headers.

    uvicorn bounds only the idle time between keep-alive requests: a client that opens a
    connection and sends nothing, or sends its headers a byte at a time, holds it forever.
    The timer runs from the connection (or the previous response) until a request's headers
    are complete (uvicorn then makes a new cycle); on expiry: 408 and close."""
    if http in ("auto", "httptools"):
        try:
            from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
        except ImportError:
            if http == "httptools":
                raise
            from uvicorn.protocols.http.h11_impl import H11Protocol as base
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

    class HeaderTimeoutProtocol(base):
        _header_timer = None
        _waiting_cycle = None  # the cycle when the timer was armed: a new one = headers in

        def _arm(self) -> None:
            if self._header_timer is None:
                self._waiting_cycle = self.cycle
                self._header_timer = self.loop.call_later(header_timeout_s, self._expire)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expire(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                body = error_body(408, f"the request headers did not arrive within "
                                  f"{header_timeout_s:g} s", "timeout")
                self.transport.write(_408 % (len(body), body))
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self.cycle is None or self.cycle.response_complete:
                self._arm()  # bytes of a new request
            super().data_received(data)
            if self.cycle is not self._waiting_cycle:
                self._disarm()  # its headers are complete

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol


def uvicorn_config(config: ServeConfig, engine=None) -> uvicorn.Config:
    return uvicorn.Config(create_app(config, engine), host=config.host, port=config.port,
                          log_level=config.log_level, access_log=False, loop=config.loop,
                          http=_protocol(config.http, config.header_timeout_s),
                          timeout_graceful_shutdown=GRACEFUL_S, lifespan="on")


def serve(config: ServeConfig, engine=None) -> None:
    """Blocks until SIGINT/SIGTERM; then drains requests and writes every usage row."""
    uvicorn.Server(uvicorn_config(config, engine)).run()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    server: uvicorn.Server
    thread: threading.Thread
    base_url: str  # http://host:port

    @property
    def app(self):
        return self.server.config.app

    @property
    def gateway(self):
        return self.app.state.gateway

    def stop(self, timeout: float = 60) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def _gateway_of(server: uvicorn.Server):
    return getattr(getattr(server.config.app, "state", None), "gateway", None)


def start_in_thread(config: ServeConfig, engine=None, timeout: float = 60) -> RunningServer:
    """A real server on loopback, in a daemon thread (no signal handlers)."""
    if config.port == 0:
        config.port = free_port(config.host)
    server = uvicorn.Server(uvicorn_config(config, engine))
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            err = getattr(_gateway_of(server), "startup_error", None)
            if err is not None:
                raise RuntimeError(f"the gateway failed to start: {err}") from err
            raise RuntimeError("the gateway failed to start (see the log)")
        if time.monotonic() > deadline:
            raise TimeoutError("the gateway did not start in time")
        time.sleep(0.02)
    return RunningServer(server, thread, f"http://{config.host}:{config.port}")
