import pytest

from distillery.harvest.testserver import Faults, ServerState, make_app, serve_in_thread


@pytest.fixture
def fake_server():
    """An echo OpenAI-compatible server on loopback; yields (base_url, state)."""
    state = ServerState(faults=Faults())
    with serve_in_thread(make_app(state)) as url:
        yield url, state
