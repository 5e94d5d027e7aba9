"""Real gateways on loopback (uvicorn in a thread), temporary SQLite databases."""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass

import pytest

from distillery import store
from distillery.gateway import FakeEngine, RunningServer, ServeConfig, start_in_thread

ADMIN = "admin-token-for-tests-0123456789"
# Both backends on the same tiny weights: `make install` builds the llama.cpp engine (the
# [llama] extra); without it the llama variants fail loudly, they never drop out.
ENGINES = ["torch", "llama"]


@pytest.fixture(scope="session", params=ENGINES)
def tiny_engine(request):
    return request.getfixturevalue(f"tiny_{request.param}_engine")


@dataclass
class Live:
    server: RunningServer
    url: str  # the database
    key: str  # a live key of account "alice"
    key_id: str

    @property
    def base_url(self) -> str:
        return self.server.base_url + "/v1"

    @property
    def gateway(self):
        return self.server.gateway

    def client(self, key: str | None = None, **kw):
        import openai

        return openai.OpenAI(base_url=self.base_url, api_key=key or self.key, max_retries=0,
                             **kw)

    def async_client(self, key: str | None = None):
        import openai

        return openai.AsyncOpenAI(base_url=self.base_url, api_key=key or self.key,
                                  max_retries=0)

    def new_key(self, account: str, **kw) -> str:
        db = store.make_engine(self.url)
        with contextlib.suppress(ValueError):
            store.create_account(db, account)
        secret = store.create_key(db, account, **kw).secret
        db.dispose()
        return secret

    def rows(self, where: str = "1=1") -> list[dict]:
        from sqlalchemy import select, text

        assert self.gateway.usage.flush(30)
        db = store.make_engine(self.url)
        t = store.Usage.__table__
        with db.connect() as c:
            out = [dict(r._mapping) for r in c.execute(select(t).where(text(where))
                                                       .order_by(t.c.id))]
        db.dispose()
        return out


def start_live(tmp_path, engine=None, **cfg) -> Live:
    url = cfg.pop("database", None) or f"sqlite:///{tmp_path}/gateway.db"
    store.migrate(url)
    db = store.make_engine(url)
    store.create_account(db, "alice")
    new = store.create_key(db, "alice")
    db.dispose()
    cfg.setdefault("watermark", "none")
    cfg.setdefault("model", "fake")
    config = ServeConfig(database=url, port=0, admin_token=ADMIN, log_level="warning", **cfg)
    server = start_in_thread(config, engine=engine or (FakeEngine() if config.model == "fake"
                                                       else None))
    return Live(server, url, new.secret, new.info.id)


@pytest.fixture
def live(tmp_path):
    lv = start_live(tmp_path)
    yield lv
    lv.server.stop()


@pytest.fixture
def make_live(tmp_path):
    started = []

    def make(engine=None, **cfg) -> Live:
        sub = tmp_path / f"g{len(list(tmp_path.glob('g*')))}"  # also after a failed start
        sub.mkdir()
        lv = start_live(sub, engine, **cfg)
        started.append(lv)
        return lv

    yield make
    for lv in started:
        lv.server.stop()


@pytest.fixture(scope="module")
def module_live(tmp_path_factory):
    """One gateway (fake engine) shared by a whole test module."""
    lv = start_live(tmp_path_factory.mktemp("live"))
    yield lv
    lv.server.stop()


@pytest.fixture
def redis_prefix(redis_server):
    import redis

    r = redis.Redis.from_url(redis_server + "/0")
    prefix = f"distillery-test-{secrets.token_hex(4)}"
    yield prefix
    for k in r.scan_iter(f"{prefix}:*"):
        r.delete(k)
    r.close()
