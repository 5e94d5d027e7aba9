"""Every watermarked response is detected with its own account's key (tiny-random teacher)."""

from __future__ import annotations

import secrets

import pytest
from click.testing import CliRunner

from distillery import store
from distillery import watermark as wm


@pytest.fixture
def ring_env(monkeypatch):
    monkeypatch.setenv("DISTILLERY_WATERMARK_KEY", secrets.token_hex(32))
    return wm.KeyRing.load()


@pytest.mark.parametrize("scheme", ["kgw", pytest.param("gumbel", marks=pytest.mark.slow)])
def test_responses_carry_their_accounts_key(make_live, tiny_engine, ring_env, scheme):
    lv = make_live(engine=tiny_engine, model="tiny-random", watermark=scheme)
    bob = lv.new_key("bob")
    texts = {}
    for account, key in (("alice", lv.key), ("bob", bob)):
        r = lv.client(key=key).chat.completions.create(
            model="tiny-random", messages=[{"role": "user", "content": "tell me a story"}],
            max_tokens=300, temperature=1.0, n=2)  # 100: adjusted p 0.017 once in CI
        texts[account] = [c.message.content for c in r.choices]
    rows = lv.rows()
    names = store.list_account_names(lv.url)
    assert names == ["alice", "bob"]
    schemes = wm.make_schemes(scheme, ring_env, names)
    for row in rows:
        account = "alice" if row["key_id"] == lv.key_id else "bob"
        expected = wm.make_scheme(scheme, ring_env, account=account)
        assert row["watermark_scheme"] == scheme
        assert row["watermark_key_id"] == expected.key_ids["account"]
        for text in row["responses"]:
            res = wm.scan(text, tiny_engine.tokenizer, schemes)
            assert res.best_account == account, (account, res.adjusted_p)
            assert res.adjusted_p < 1e-2


def test_watermark_detect_cli_names_the_account(make_live, tiny_engine, ring_env, tmp_path):
    lv = make_live(engine=tiny_engine, model="tiny-random", watermark="kgw")
    lv.new_key("bob")
    r = lv.client().chat.completions.create(
        model="tiny-random", messages=[{"role": "user", "content": "hello"}], max_tokens=120)
    f = tmp_path / "answer.txt"
    f.write_text(r.choices[0].message.content)
    from distillery.cli import main

    assert store.list_account_names(lv.url) == ["alice", "bob"]
    out = CliRunner().invoke(main, ["watermark", "detect", str(f), "--all-accounts",
                                    "--database", lv.url, "--model", "tiny-random"])
    assert out.exit_code == 0, out.output
    assert "best account: alice" in out.output


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_serve_refuses_a_watermark_without_a_key(make_live, monkeypatch, tmp_path):
    """It fails for that reason (not any start-up failure), and starts once a key is there."""
    monkeypatch.delenv("DISTILLERY_WATERMARK_KEY", raising=False)
    monkeypatch.setenv("DISTILLERY_HOME", str(tmp_path))
    with pytest.raises(RuntimeError, match="failed to start") as e:
        make_live(watermark="kgw")
    cause = e.value.__cause__
    assert cause is not None and "DISTILLERY_WATERMARK_KEY" in str(cause), repr(cause)
    monkeypatch.setenv("DISTILLERY_WATERMARK_KEY", secrets.token_hex(32))
    lv = make_live(watermark="kgw")
    assert lv.rows() == [] and lv.gateway.ring is not None


def test_watermark_params_reach_the_scheme_and_bad_ones_fail_at_config(make_live, tiny_engine,
                                                                       ring_env):
    """A context width of 1 as served is what detection with width 1 finds; width 2 not."""
    from distillery.gateway import ServeConfig

    with pytest.raises(ValueError, match="context_width"):
        ServeConfig(watermark_params={"context_width": 0})
    lv = make_live(engine=tiny_engine, model="tiny-random", watermark="kgw",
                   watermark_params={"context_width": 1})
    r = lv.client().chat.completions.create(
        model="tiny-random", messages=[{"role": "user", "content": "tell me a story"}],
        max_tokens=150, temperature=1.0)
    text = r.choices[0].message.content
    p = {w: wm.scan(text, tiny_engine.tokenizer,
                    wm.make_schemes("kgw", ring_env, ["alice"], context_width=w)).adjusted_p
         for w in (1, 2)}
    assert p[1] < 1e-3 < p[2], p
