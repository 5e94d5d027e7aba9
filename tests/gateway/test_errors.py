"""Every error path answers OpenAI-shaped JSON with the right status, and is recorded."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from distillery import store
from distillery.gateway import FakeEngine

MSG = [{"role": "user", "content": "hi"}]


def post(live, path: str, json=None, key: str | None = "default", **kw) -> httpx.Response:
    headers = kw.pop("headers", {})
    if key is not None:
        headers["Authorization"] = f"Bearer {live.key if key == 'default' else key}"
    return httpx.post(live.server.base_url + path, json=json, headers=headers, timeout=30, **kw)


def error_of(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"}, body
    assert {"message", "type", "code"} <= set(body["error"])
    assert "Traceback" not in r.text
    return body["error"]


def chat(**kw) -> dict:
    return {"model": "fake", "messages": MSG, **kw}


def test_401_missing_bad_and_revoked_keys(live):
    assert post(live, "/v1/chat/completions", chat(), key=None).status_code == 401
    r = post(live, "/v1/chat/completions", chat(), key="dk-not-a-real-key")
    assert r.status_code == 401 and error_of(r)["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        live.client(key="sk-wrong").chat.completions.create(model="fake", messages=MSG)
    db = store.make_engine(live.url)
    store.revoke_key(db, live.key_id)
    live.gateway.auth.invalidate()
    assert post(live, "/v1/chat/completions", chat()).status_code == 401
    rows = live.rows()
    assert [r["status_code"] for r in rows] == [401, 401, 401, 401]
    assert rows[0]["account_id"] is None and rows[0]["error_type"] == "missing_api_key"


def test_403_blocked_account_and_throttled_limits(live):
    db = store.make_engine(live.url)
    store.set_status(db, "alice", "blocked", "test")
    live.gateway.auth.invalidate()
    with pytest.raises(openai.PermissionDeniedError, match="blocked"):
        live.client().chat.completions.create(model="fake", messages=MSG)
    store.set_status(db, "alice", "flagged")
    live.gateway.auth.invalidate()
    live.client().chat.completions.create(model="fake", messages=MSG)  # flagged: served
    row = live.rows()[0]
    assert row["status_code"] == 403 and row["account_id"] is not None


def test_status_change_applies_without_invalidation_within_the_cache_ttl(make_live):
    lv = make_live(auth_cache_ttl_s=0.2)
    lv.client().chat.completions.create(model="fake", messages=MSG)
    store.set_status(store.make_engine(lv.url), "alice", "blocked")
    time.sleep(0.3)
    with pytest.raises(openai.PermissionDeniedError):
        lv.client().chat.completions.create(model="fake", messages=MSG)


def test_404_unknown_model_and_route(live):
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        live.client().chat.completions.create(model="gpt-9", messages=MSG)
    with pytest.raises(openai.NotFoundError):
        live.client().models.retrieve("gpt-9")
    r = post(live, "/v1/nothing", {})
    assert r.status_code == 404 and error_of(r)["type"] == "not_found_error"
    assert error_of(httpx.get(live.server.base_url + "/nope")) is not None


def test_400_for_every_bad_input_with_readable_messages(live):
    r = post(live, "/v1/chat/completions", content=b"{not json",
             headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in error_of(r)["message"]
    c = live.client()
    with pytest.raises(openai.BadRequestError, match="max_tokens is 1000000000"):
        c.chat.completions.create(model="fake", messages=MSG, max_tokens=10**9)
    with pytest.raises(openai.BadRequestError, match="top_logprobs needs logprobs"):
        c.chat.completions.create(model="fake", messages=MSG, top_logprobs=3)
    with pytest.raises(openai.BadRequestError, match="prompt is empty"):
        c.completions.create(model="fake", prompt="   ")
    with pytest.raises(openai.BadRequestError, match="echo"):
        c.completions.create(model="fake", prompt="x", echo=True)
    for bad in ({"temperature": 5}, {"top_logprobs": 21, "logprobs": True}, {"n": 0},
                {"max_tokens": -1}, {"messages": []}, {"stop": ""}, {"top_p": 0}):
        r = post(live, "/v1/chat/completions", chat(**bad))
        assert r.status_code == 400, (bad, r.text)
        e = error_of(r)
        assert e["type"] == "invalid_request_error" and e["param"], (bad, e)
    r = post(live, "/v1/chat/completions", {"model": "fake"})
    assert r.status_code == 400 and "messages" in error_of(r)["message"]
    assert error_of(r)["param"] == "messages"
    statuses = [row["status_code"] for row in live.rows()]
    assert statuses == [400] * 13


def test_oversized_prompt_400_and_body_413(make_live):
    lv = make_live(max_prompt_tokens=50, max_body_bytes=10_000)
    c = lv.client()
    with pytest.raises(openai.BadRequestError, match="the prompt has .* tokens; this server"):
        c.chat.completions.create(model="fake", messages=[{"role": "user",
                                                           "content": "word " * 100}])
    with pytest.raises(openai.APIStatusError) as e:
        c.chat.completions.create(model="fake", messages=[{"role": "user",
                                                           "content": "x" * 20_000}])
    assert e.value.status_code == 413 and "too large" in e.value.message
    r = httpx.post(lv.server.base_url + "/v1/chat/completions", headers={
        "Authorization": f"Bearer {lv.key}", "Content-Type": "application/json"},
        content=iter([b'{"model": "fake", "messages": [{"role": "user", "content": "',
                      b"y" * 20_000, b'"}]}']))  # chunked: no content-length
    assert r.status_code == 413
    assert [row["status_code"] for row in lv.rows()] == [400, 413, 413]


def test_429_requests_per_minute_with_retry_after(live):
    key = live.new_key("bob", rpm_limit=2)
    c = live.client(key=key)
    c.chat.completions.create(model="fake", messages=MSG)
    c.chat.completions.create(model="fake", messages=MSG)
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="fake", messages=MSG)
    assert int(e.value.response.headers["Retry-After"]) >= 1
    assert e.value.body["code"] == "rate_limit_exceeded"
    live.client().chat.completions.create(model="fake", messages=MSG)  # other keys unaffected


def test_429_tokens_per_minute(live):
    key = live.new_key("carol", tpm_limit=20)
    c = live.client(key=key)
    c.chat.completions.create(model="fake", messages=MSG, max_tokens=8)
    c.chat.completions.create(model="fake", messages=MSG, max_tokens=8)  # overdraws
    with pytest.raises(openai.RateLimitError):
        c.chat.completions.create(model="fake", messages=MSG, max_tokens=8)


class SlowEngine(FakeEngine):
    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay

    def generate(self, requests, on_delta=None, **kw):
        time.sleep(self.delay)
        return super().generate(requests, on_delta, **kw)


def test_503_when_the_queue_is_full(make_live):
    lv = make_live(engine=SlowEngine(0.3), max_queue=2, max_batch_size=1)

    async def main():
        client = lv.async_client()
        out = await asyncio.gather(*[client.chat.completions.create(
            model="fake", messages=MSG) for _ in range(8)], return_exceptions=True)
        await client.close()
        return out

    out = asyncio.run(main())
    busy = [o for o in out if isinstance(o, openai.APIStatusError)]
    assert busy and all(o.status_code == 503 for o in busy)
    assert busy[0].response.headers["Retry-After"] == "1"
    assert "capacity" in busy[0].message
    assert any(not isinstance(o, Exception) for o in out)
    assert sorted(r["status_code"] for r in lv.rows()) == sorted(
        503 if isinstance(o, Exception) else 200 for o in out)


class BrokenEngine(FakeEngine):
    def generate(self, requests, on_delta=None, **kw):
        raise RuntimeError("secret internal detail")


def test_500_never_leaks_internals(make_live):
    lv = make_live(engine=BrokenEngine())
    r = post(lv, "/v1/chat/completions", chat())
    assert r.status_code == 500 and "secret" not in r.text and "x-request-id" in r.headers
    assert error_of(r)["type"] == "server_error"
    r = post(lv, "/v1/chat/completions", chat(stream=True))
    assert r.status_code == 200 and '"engine_error"' in r.text and "secret" not in r.text
    assert [row["status_code"] for row in lv.rows()] == [500, 200]


def test_admin_routes(live):
    url = live.server.base_url + "/admin"
    h = {"Authorization": f"Bearer {live.gateway.config.admin_token}"}
    assert httpx.get(url + "/accounts").status_code == 401
    assert httpx.get(url + "/accounts", headers={"Authorization": "Bearer x" * 5}
                     ).status_code == 401
    assert httpx.post(url + "/accounts", json={"name": "dave"}, headers=h).status_code == 201
    assert httpx.post(url + "/accounts", json={"name": "dave"}, headers=h).status_code == 400
    k = httpx.post(url + "/keys", json={"account": "dave", "rpm_limit": 100}, headers=h).json()
    assert k["key"].startswith("dk-") and k["account"] == "dave"
    live.client(key=k["key"]).chat.completions.create(model="fake", messages=MSG)
    listed = httpx.get(url + "/keys", params={"account": "dave"}, headers=h).json()["data"]
    assert [x["id"] for x in listed] == [k["id"]] and "key" not in listed[0]
    assert "key_hash" not in str(listed)
    r = httpx.put(url + "/accounts/dave/status", json={"status": "blocked"}, headers=h)
    assert r.json()["status"] == "blocked"
    with pytest.raises(openai.PermissionDeniedError):
        live.client(key=k["key"]).chat.completions.create(model="fake", messages=MSG)
    assert httpx.put(url + "/accounts/dave/status", json={"status": "x"},
                     headers=h).status_code == 400
    assert httpx.delete(url + "/keys/key-nope", headers=h).status_code == 404
    assert httpx.delete(url + f"/keys/{k['id']}", headers=h).json()["revoked"] is True


def test_admin_disabled_without_token(make_live):
    lv = make_live()
    lv.gateway.config.admin_token = None
    r = httpx.get(lv.server.base_url + "/admin/accounts", headers={"Authorization": "Bearer x"})
    assert r.status_code == 403 and "disabled" in error_of(r)["message"]


def test_keys_never_reach_the_log(make_live, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    lv = make_live()
    lv.client().chat.completions.create(model="fake", messages=MSG)
    with pytest.raises(openai.AuthenticationError):
        lv.client(key="dk-wrong-secret-value").models.list()
    lv.server.stop()
    assert lv.key not in caplog.text and "dk-wrong-secret-value" not in caplog.text
