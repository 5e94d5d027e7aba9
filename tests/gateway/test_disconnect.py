"""A client that goes away cancels its generation (the engine stops decoding it, its batch
slot frees up, a queued job never reaches the engine) and leaves exactly one usage row, with
status 499 (nginx's "client closed request")."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

from distillery.gateway import FakeEngine

LONG = 400  # tokens; at STEP_S a step, 4 s of decoding unless cancelled
STEP_S = 0.01


def chat(max_tokens: int = LONG, **kw) -> dict:
    return {"model": "fake", "messages": [{"role": "user", "content": "tell a long story"}],
            "max_tokens": max_tokens, **kw}


def open_request(lv, body: dict) -> socket.socket:
    """A raw connection with a chat request sent, not read (so we can drop it)."""
    u = urlsplit(lv.server.base_url)
    s = socket.create_connection((u.hostname, u.port))
    data = json.dumps(body).encode()
    s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: {u.netloc}\r\n"
              f"Authorization: Bearer {lv.key}\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return s


def wait_for(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_dropped_request_stops_decoding_and_frees_the_engine(make_live):
    engine = FakeEngine(tokens=LONG, step_s=STEP_S)
    lv = make_live(engine=engine, max_batch_size=1)
    s = open_request(lv, chat())
    wait_for(lambda: engine.steps >= 5)  # decoding it
    s.close()
    wait_for(lambda: engine.aborted == 1, timeout=2)
    steps = engine.steps
    assert steps < LONG / 4
    t = time.perf_counter()
    r = lv.client().chat.completions.create(**chat(max_tokens=3))
    assert r.choices[0].message.content == "the quick brown "
    # the engine was free: not still on the dropped request's remaining >= 3 s of steps
    # (a loose bound: a loaded 2-core CI machine took 1.3 s here)
    assert time.perf_counter() - t < 2.5
    assert engine.steps == steps + 3  # and never decoded the dropped request again
    rows = lv.rows()
    assert [(r["status_code"], r["error_type"]) for r in rows] == [(499, "client_closed"),
                                                                   (200, None)]
    assert rows[0]["completion_tokens"] == 0 and rows[0]["prompt_tokens"] > 0


def test_a_dropped_stream_stops_decoding_and_records_what_was_sent(make_live):
    engine = FakeEngine(tokens=LONG, step_s=STEP_S)
    lv = make_live(engine=engine)
    stream = lv.client().chat.completions.create(**chat(stream=True))
    got = ""
    for chunk in stream:
        got += chunk.choices[0].delta.content or ""
        if len(got.split()) >= 3:
            break
    stream.close()
    wait_for(lambda: engine.aborted == 1, timeout=2)
    assert engine.steps < LONG / 4
    (row,) = lv.rows()
    assert (row["status_code"], row["error_type"], row["stream"]) == (499, "client_closed",
                                                                      True)
    # the row keeps the text streamed before the drop (at least what the client read)
    assert row["responses"][0].startswith(got)
    assert row["completion_tokens"] == len(row["responses"][0].split()) >= 3


def test_a_dropped_request_that_still_waits_never_reaches_the_engine(make_live):
    engine = FakeEngine(tokens=LONG, step_s=STEP_S)
    lv = make_live(engine=engine, max_batch_size=1)
    running = open_request(lv, chat())
    wait_for(lambda: engine.steps >= 1)
    queued = open_request(lv, chat())
    wait_for(lambda: lv.gateway.batcher.depth == 1)
    queued.close()
    time.sleep(0.1)  # the gateway hears the drop and cancels the queued job
    running.close()
    wait_for(lambda: engine.aborted == 1, timeout=2)
    wait_for(lambda: lv.gateway.batcher.dropped == 1, timeout=2)
    assert engine.requests_seen == 1  # only the running one was ever decoded
    assert [r["status_code"] for r in lv.rows()] == [499, 499]


def test_a_served_request_is_not_cancelled(make_live):
    """The disconnect watcher must not fire when a response completes normally (keep-alive
    connection reused, then closed)."""
    engine = FakeEngine(tokens=4, step_s=STEP_S)
    lv = make_live(engine=engine)
    s = open_request(lv, chat(max_tokens=4))
    data = b""
    while b'"usage"' not in data:
        data += s.recv(65536)
    s.close()
    r = lv.client().chat.completions.create(**chat(max_tokens=4))
    assert r.choices[0].finish_reason == "length"
    assert engine.aborted == 0
    assert [r["status_code"] for r in lv.rows()] == [200, 200]


def test_a_dropped_stream_stops_the_real_engine(make_live, tiny_engine):
    """The same through TorchEngine's continuous batching: the batcher's is_cancelled reaches
    the decode loop, and the engine call ends long before max_tokens."""
    calls: list[float] = []  # generate() durations

    class Timed:
        def __getattr__(self, name):
            return getattr(tiny_engine, name)

        def generate(self, *args, **kw):
            t = time.perf_counter()
            try:
                return tiny_engine.generate(*args, **kw)
            finally:
                calls.append(time.perf_counter() - t)

    lv = make_live(engine=Timed(), model="tiny-random")
    t0 = time.perf_counter()
    stream = lv.client().chat.completions.create(
        model="tiny-random", messages=[{"role": "user", "content": "hi"}], max_tokens=1500,
        temperature=0, stream=True)
    for chunks, _ in enumerate(stream, 1):
        if chunks >= 4:
            break
    first = time.perf_counter() - t0
    stream.close()
    wait_for(lambda: calls, timeout=60)
    (row,) = lv.rows()
    assert (row["status_code"], row["error_type"]) == (499, "client_closed")
    assert 1 <= row["completion_tokens"] < 1500
    assert calls[0] < first + 5  # stopped soon after the drop, not after 1,500 tokens


def test_a_dropped_stream_is_charged_to_the_token_budget(make_live):
    """Reading most of an answer and disconnecting before its end must not dodge the
    tokens-per-minute limit: the prompt and the streamed tokens are charged."""
    import openai
    import pytest

    engine = FakeEngine(tokens=LONG, step_s=STEP_S)
    lv = make_live(engine=engine)
    c = lv.client(key=lv.new_key("mallory", tpm_limit=60))
    stream = c.chat.completions.create(**chat(stream=True))
    got = ""
    for chunk in stream:
        got += chunk.choices[0].delta.content or ""
        if len(got.split()) >= 60:  # the whole budget, read before the answer's end
            break
    stream.close()
    wait_for(lambda: engine.aborted == 1, timeout=2)
    wait_for(lambda: lv.rows(), timeout=2)
    with pytest.raises(openai.RateLimitError):
        c.chat.completions.create(**chat(max_tokens=3))
