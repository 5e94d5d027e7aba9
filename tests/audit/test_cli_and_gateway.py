"""`distillery audit ...` on SQLite and PostgreSQL, the background auditor in a live gateway,
and the simulated clock's default (off: the header is ignored)."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from distillery import store
from distillery.audit.replay import SIM_TIME_HEADER, provision, replay
from distillery.audit.simulate import SimConfig, simulate
from distillery.cli import main

SMALL = {"developer": (2, 40), "support_bot": (1, 100), "self_instruct": (1, 120)}


def _invoke(*args) -> str:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/audit.db"
    return request.getfixturevalue("pg_url")


def test_run_decisions_override(db_url, calibration, sim_gateway, tmp_path):
    _, cal_path = calibration
    server = sim_gateway(db_url, simulated_clock=True)
    try:
        reqs, labels = simulate(SimConfig(seed=4, mix=SMALL))
        replay(reqs, server.base_url + "/v1", provision(db_url, {lab.account for lab in labels}))
        assert server.gateway.usage.flush(30)
    finally:
        server.stop()
    report = tmp_path / "report.html"
    out = json.loads(_invoke("audit", "run", "--database", db_url, "--calibration",
                             str(cal_path), "--json", "--report", str(report)))
    attacker = next(lab.account for lab in labels if lab.role == "attack")
    assert out["rows_read"] == len(reqs)
    assert out["ranked"][0]["entity"] == f"account:{attacker}"
    assert attacker in report.read_text()
    again = json.loads(_invoke("audit", "run", "--database", db_url, "--calibration",
                               str(cal_path), "--json"))
    assert again["rows_read"] == 0  # incremental: the cursor moved past every row
    listed = _invoke("audit", "decisions", "--database", db_url, "--json")
    ds = json.loads(listed)
    assert ds and all(d["account"] == attacker for d in ds)
    assert ds[0]["evidence"]["p_values"]["combined"] <= 0.01
    assert "flag" in _invoke("audit", "decisions", "--database", db_url)
    _invoke("audit", "override", attacker, "--status", "active", "--database", db_url)
    db = store.make_engine(db_url)
    assert store.get_account(db, attacker).status == "active"
    db.dispose()
    last = json.loads(_invoke("audit", "decisions", "--database", db_url, "--json",
                              "--limit", "1"))[0]
    assert (last["actor"], last["action"], last["status_after"]) == ("operator", "override",
                                                                       "active")


def test_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "t.jsonl"
    bad.write_text('{"t": 1, "account": "a"}\n')
    r = CliRunner().invoke(main, ["audit", "replay", str(bad), "--base-url", "http://x/v1",
                                  "--database", f"sqlite:///{tmp_path}/d.db"])
    assert r.exit_code == 1 and r.output.startswith("error:") and "t.jsonl:1" in r.output
    r = CliRunner().invoke(main, ["audit", "run", "--database", f"sqlite:///{tmp_path}/d.db"])
    assert r.exit_code == 1 and "calibration" in r.output and len(r.output.splitlines()) == 1


def test_background_auditor_blocks_the_next_request(calibration, sim_gateway, tmp_path):
    _, cal_path = calibration
    conf = tmp_path / "audit.toml"
    conf.write_text("[audit]\ninterval_s = 0.05\n")
    url = f"sqlite:///{tmp_path}/bg.db"
    server = sim_gateway(url, simulated_clock=True, audit_calibration=str(cal_path),
                         audit_config=str(conf))
    try:
        gw = server.gateway
        reqs, labels = simulate(SimConfig(seed=5, mix={"self_instruct": (1, 200)}))
        keys = provision(url, {lab.account for lab in labels})

        def between():
            assert gw.usage.flush(30) and gw.auditor.wait_pass(30)

        res = replay(reqs, server.base_url + "/v1", keys, every=25, between=between)
        account = labels[0].account
        assert res.first(account, 403), dict(res.by_account[account])
        assert gw.auditor.last_error is None
    finally:
        server.stop()


def test_simulated_clock_is_off_by_default(sim_gateway, tmp_path):
    import openai

    url = f"sqlite:///{tmp_path}/clock.db"
    server = sim_gateway(url)
    try:
        key = provision(url, ["someone"])["someone"]
        c = openai.OpenAI(base_url=server.base_url + "/v1", api_key=key, max_retries=0)
        before = time.time()
        c.chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}],
                                  extra_headers={SIM_TIME_HEADER: "1000000000"})
        assert server.gateway.usage.flush(30)
    finally:
        server.stop()
    db = store.make_engine(url)
    with db.connect() as conn:
        (created,) = conn.execute(select(store.Usage.__table__.c.created_at)).one()
    db.dispose()
    assert created.timestamp() >= before - 1
