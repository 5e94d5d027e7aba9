"""What an attacker or an operator tried (issue 9): request ids, exposed routes, file modes,
slow and dropped uploads, admin bounds, OpenAI's shape of errors and options."""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from urllib.parse import urlsplit

import httpx
import openai
import pytest

MSG = [{"role": "user", "content": "hi"}]
CHAT = json.dumps({"model": "fake", "messages": MSG}).encode()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_repeated_client_request_ids_cannot_stop_usage_logging(make_live, request, backend):
    """Two clients send the same X-Request-ID (a retrying proxy does it by accident); then
    every one of 1,000 more answered requests has its usage row."""
    cfg = {"database": request.getfixturevalue("pg_url")} if backend == "postgresql" else {}
    lv = make_live(**cfg)
    keys = [lv.key, lv.new_key("bob")]
    answered = []
    with httpx.Client(base_url=lv.server.base_url, timeout=30) as c:
        for i in range(1002):
            r = c.post("/v1/chat/completions", content=CHAT, headers={
                "Authorization": f"Bearer {keys[i % 2]}", "Content-Type": "application/json",
                "X-Request-ID": "same-id" if i < 2 else f"client-{i}"})
            assert r.status_code == 200
            answered.append(r.headers["x-request-id"])
    rows = {r["request_id"]: r for r in lv.rows()}  # (today: rows() waits for them in vain)
    assert len(set(answered)) == 1002 and "same-id" not in answered  # the server's own ids
    assert set(answered) <= set(rows)
    assert [rows[a]["client_request_id"] for a in answered[:3]] == ["same-id", "same-id",
                                                                   "client-2"]
    assert lv.gateway.usage.dropped == 0


def test_usage_files_are_private(make_live, tmp_path):
    url = f"sqlite:///{tmp_path}/new-dir/usage.db"
    lv = make_live(database=url)
    lv.client().chat.completions.create(model="fake", messages=MSG)
    assert lv.rows()
    for f in ("usage.db", "usage.db-wal"):
        assert stat.S_IMODE(os.stat(tmp_path / "new-dir" / f).st_mode) == 0o600, f
    assert stat.S_IMODE(os.stat(tmp_path / "new-dir").st_mode) == 0o700

    from distillery import store

    spill = tmp_path / "spill"
    w = store.UsageWriter(store.make_engine(f"sqlite:///{tmp_path}/unmigrated.db"),
                          interval_s=10, fallback_dir=spill)
    w.record({"request_id": "r1"})
    w.close()
    (f,) = spill.glob("usage-unwritten-*.jsonl")
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(spill).st_mode) == 0o700


def connect(lv) -> socket.socket:
    u = urlsplit(lv.server.base_url)
    s = socket.create_connection((u.hostname, u.port))
    s.settimeout(10)
    return s


def head(lv, length: int, key: str | None = None) -> bytes:
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            f"{key or lv.key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def read_until_closed(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def test_a_stalled_body_gets_408_and_the_connection_closed_in_time(make_live):
    lv = make_live(body_timeout_s=1.0)
    s = connect(lv)
    t = time.monotonic()
    s.sendall(head(lv, len(CHAT)) + CHAT[:10])  # then nothing
    answer = read_until_closed(s)  # raises TimeoutError after 10 s if held open
    took = time.monotonic() - t
    assert answer.startswith(b"HTTP/1.1 408") and b'"timeout"' in answer
    assert 0.9 < took < 2.5
    row = lv.rows()[0]
    assert (row["status_code"], row["error_type"]) == (408, "request_timeout")
    s.close()


def test_admin_routes_check_the_token_before_and_time_the_body(make_live):
    lv = make_live(body_timeout_s=1.0)
    s = connect(lv)
    s.sendall(b"POST /admin/accounts HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    t = time.monotonic()
    assert s.recv(65536).startswith(b"HTTP/1.1 401")  # no token: answered, body unread
    assert time.monotonic() - t < 0.5
    s.close()
    s = connect(lv)
    t = time.monotonic()
    s.sendall(f"POST /admin/accounts HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
              f"Authorization: Bearer {lv.gateway.config.admin_token}\r\n\r\n{{".encode())
    assert read_until_closed(s).startswith(b"HTTP/1.1 408")
    assert time.monotonic() - t < 2.5


def test_stalled_headers_and_silent_connections_are_closed_in_time(make_live):
    lv = make_live(header_timeout_s=1.0)
    slow, silent = connect(lv), connect(lv)
    t = time.monotonic()
    slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")  # and never ends
    assert read_until_closed(slow).startswith(b"HTTP/1.1 408")
    assert read_until_closed(silent).startswith(b"HTTP/1.1 408")
    assert time.monotonic() - t < 2.5
    # a complete request on a fresh connection is not affected, nor a keep-alive one
    with httpx.Client(base_url=lv.server.base_url) as c:
        for _ in range(2):
            r = c.post("/v1/chat/completions", content=CHAT, headers={
                "Authorization": f"Bearer {lv.key}", "Content-Type": "application/json"})
            assert r.status_code == 200
            time.sleep(0.6)  # twice 0.6 s on one connection: more than 1 s in all


def test_a_client_dropping_mid_upload_is_recorded_as_499(live):
    s = connect(live)
    s.sendall(head(live, len(CHAT)) + CHAT[:10])
    time.sleep(0.2)
    s.close()
    deadline = time.monotonic() + 5
    while not live.rows():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    row = live.rows()[0]
    assert (row["status_code"], row["error_type"]) == (499, "client_closed")


def test_metrics_docs_and_schema_need_a_token(make_live, monkeypatch):
    monkeypatch.setenv("DISTILLERY_METRICS_TOKEN", "metrics-token-0123456789")
    lv = make_live()
    base = lv.server.base_url
    assert "metrics-token" not in repr(lv.gateway.config)
    for path in ("/metrics", "/openapi.json"):
        r = httpx.get(base + path)
        assert r.status_code == 401 and "alice" not in r.text
        assert httpx.get(base + path, headers={"Authorization": "Bearer metrics-token-0123456"
                                               "789"}).status_code == 200
    assert httpx.get(base + "/docs").status_code == 404
    assert httpx.get(base + "/redoc").status_code == 404


def test_openapi_states_the_real_limits_and_status_codes(make_live):
    lv = make_live(max_n=4, max_tokens_limit=100)
    schema = httpx.get(lv.server.base_url + "/openapi.json", headers={
        "Authorization": f"Bearer {lv.gateway.config.admin_token}"}).json()
    chat = schema["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert chat["n"]["maximum"] == 4
    assert {"type": "integer", "minimum": 1, "maximum": 100} in chat["max_tokens"]["anyOf"]
    codes = set(schema["paths"]["/v1/chat/completions"]["post"]["responses"])
    assert {"200", "400", "401", "403", "408", "413", "429", "503"} <= codes
    assert "422" not in codes
    with pytest.raises(openai.BadRequestError):
        lv.client().chat.completions.create(model="fake", messages=MSG, n=5)


def test_admin_limits_are_bounded(live):
    h = {"Authorization": f"Bearer {live.gateway.config.admin_token}"}
    url = live.server.base_url + "/admin/keys"
    for body in ({"account": "alice", "rpm_limit": 1e20}, {"account": "alice",
                                                          "tpm_limit": 2**40}):
        r = httpx.post(url, content=json.dumps(body),
                       headers={**h, "Content-Type": "application/json"})
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and err["param"] in body
    r = httpx.put(live.server.base_url + "/admin/accounts/alice/status",
                  json={"status": "asleep"}, headers=h)
    assert r.status_code == 400 and r.json()["error"]["param"] == "status"


def test_authentication_comes_before_the_body(live):
    base = live.server.base_url + "/v1/chat/completions"
    r = httpx.post(base, content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 401
    r = httpx.post(base, content=b"x" * (2 << 20), headers={"Authorization": "Bearer dk-no"})
    assert r.status_code == 401
    r = httpx.post(base, content=CHAT, headers={"Authorization": f"bearer {live.key}",
                                                "Content-Type": "application/json"})
    assert r.status_code == 200  # the scheme is case-insensitive


def test_include_usage_false_is_honoured_and_unsupported_options_refused(live):
    c = live.client()

    def usage_chunks(**kw) -> int:
        chunks = c.chat.completions.create(model="fake", messages=MSG, stream=True,
                                           max_tokens=3, **kw)
        return sum(ch.usage is not None for ch in chunks)

    assert usage_chunks(stream_options={"include_usage": False}) == 0
    assert usage_chunks(stream_options={"include_usage": True}) == 1
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    for kw, param in (({"tools": [tool]}, "tools"),
                      ({"response_format": {"type": "json_object"}}, "response_format")):
        with pytest.raises(openai.BadRequestError, match="not supported") as e:
            c.chat.completions.create(model="fake", messages=MSG, **kw)
        assert e.value.body["param"] == param
