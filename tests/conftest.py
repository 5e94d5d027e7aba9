import glob
import os
import secrets
import subprocess
import time

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_torch_engine():
    """A 2-layer random Llama with SmolLM2's real tokenizer (cached after the first parse)."""
    from distillery.engine import TorchEngine

    return TorchEngine.from_name("tiny-random")


@pytest.fixture(scope="session")
def tiny_engine(tiny_torch_engine):
    """The torch engine; tests/engine and tests/gateway run on every installed backend."""
    return tiny_torch_engine


@pytest.fixture(scope="session")
def tiny_llama_engine():
    """The same tiny weights on llama.cpp (exported to an fp32 GGUF; the [llama] extra)."""
    from distillery.engine import LlamaCppEngine

    return LlamaCppEngine("tiny-random")


PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379"
# what CI runs when a service the tests need is down (.ci/run starts them too)
START_PG = "pg_ctlcluster --skip-systemctl-redirect {version} main start"
START_REDIS = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port",
               "6379", "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
               "--logfile", "/var/log/redis/ci.log"]


def _ensure(name: str, up, start: list[str]) -> None:
    """Never skip: start the service if it is down, and fail loudly if it will not come up."""
    if up():
        return
    try:
        out = subprocess.run(start, capture_output=True, text=True, timeout=60)
        why = (out.stderr or out.stdout).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        why = str(e)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if up():
            return
        time.sleep(0.2)
    pytest.fail(f"{name} is down and `{' '.join(start)}` did not start it: {why}",
                pytrace=False)


def _pg_up() -> bool:
    import psycopg

    try:
        psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test",
                        connect_timeout=2).close()
        return True
    except psycopg.OperationalError:
        return False


def _redis_up() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS, socket_connect_timeout=2).ping())
    except redis.exceptions.ConnectionError:
        return False


@pytest.fixture(scope="session")
def postgres_server() -> str:
    versions = [os.path.basename(p) for p in glob.glob("/etc/postgresql/*")] or ["?"]
    _ensure("PostgreSQL at 127.0.0.1:5432", _pg_up,
            START_PG.format(version=versions[0]).split())
    return PG


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The real Redis at 127.0.0.1:6379 (started if down); a test picks its own db/prefix."""
    _ensure("Redis at 127.0.0.1:6379", _redis_up, START_REDIS)
    return REDIS


@pytest.fixture
def pg_url(postgres_server):
    """A throwaway schema on the real PostgreSQL server (127.0.0.1:5432), dropped afterwards.

    No skip when the server is down: it is started, or the test fails.
    """
    from sqlalchemy import text

    from distillery import store

    schema = f"distillery_test_{secrets.token_hex(4)}"
    admin = store.make_engine(PG)
    with admin.begin() as c:
        c.execute(text(f"create schema {schema}"))
    yield f"{PG}?options=-csearch_path%3D{schema}"
    with admin.begin() as c:
        c.execute(text(f"drop schema {schema} cascade"))
    admin.dispose()


@pytest.fixture(scope="session")
def rendered_dom():
    """path -> the DOM after Chromium (Debian's, headless) loaded the page and ran its scripts:
    the HTML reports' in-page checks mark there which figures were drawn (distillery.reporting).
    """
    import shutil

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: `make install` installs it (apt-get)"

    def render(path) -> str:
        return subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu",
             "--virtual-time-budget=5000", "--dump-dom", f"file://{path}"],
            capture_output=True, text=True, timeout=120, check=True).stdout

    return render

