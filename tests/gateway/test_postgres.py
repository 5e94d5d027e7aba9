"""The gateway on the real PostgreSQL (127.0.0.1:5432), in a schema of its own."""

from __future__ import annotations


def test_gateway_records_usage_in_postgresql(make_live, pg_url):
    lv = make_live(database=pg_url)
    c = lv.client()
    r = c.chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}],
                                  n=2, seed=2**62)
    chunks = list(c.completions.create(model="fake", prompt="x y", stream=True, max_tokens=2))
    assert r.choices[1].message.content and chunks
    rows = lv.rows()
    assert [x["route"] for x in rows] == ["/v1/chat/completions", "/v1/completions"]
    assert rows[0]["responses"] == [ch.message.content for ch in r.choices]
    assert rows[0]["seed"] == 2**62 and rows[1]["stream"] is True
