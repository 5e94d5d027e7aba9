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

GRACEFUL_S = 60  # SIGTERM: stop accepting, let in-flight responses finish for up to this long


def uvicorn_config(config: ServeConfig, engine=None) -> uvicorn.Config:
    return uvicorn.Config(create_app(config, engine), host=config.host, port=config.port,
                          log_level=config.log_level, access_log=False,
                          loop=config.loop, http=config.http,
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
            raise RuntimeError("the gateway failed to start (see the log)")
        if time.monotonic() > deadline:
            raise TimeoutError("the gateway did not start in time")
        time.sleep(0.02)
    return RunningServer(server, thread, f"http://{config.host}:{config.port}")
