"""The teacher gateway: OpenAI-compatible API, accounts, usage, rate limits, watermarks."""

from distillery.gateway.app import Gateway, create_app
from distillery.gateway.config import ServeConfig
from distillery.gateway.fake import FakeEngine
from distillery.gateway.server import RunningServer, serve, start_in_thread

__all__ = ["FakeEngine", "Gateway", "RunningServer", "ServeConfig", "create_app", "serve",
           "start_in_thread"]
