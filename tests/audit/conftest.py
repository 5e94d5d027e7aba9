"""Audit fixtures: a benign calibration (hashing embedder, seed 1) shared by the session, and
a gateway with the simulated clock on loopback (fake engine)."""

from __future__ import annotations

import pytest

from distillery import store
from distillery.gateway import FakeEngine, ServeConfig, start_in_thread

# benign only, smaller than simulate.CALIBRATION_MIX (fast tier); seed 1 never scored
CAL_MIX = {"developer": (12, 250), "student": (20, 60), "writer": (8, 150),
           "support_bot": (4, 500), "eval_run": (4, 400), "translation": (4, 400)}
# the traffic scored: another seed; the 50 x 20 campaigns (blatant, careful) at full size
EVAL_MIX = {"developer": (6, 60), "student": (10, 25), "writer": (3, 40), "support_bot": (2, 250),
            "eval_run": (1, 250), "translation": (1, 200), "self_instruct": (1, 200),
            "taxonomy": (1, 200), "cot": (1, 200), "logprobs": (1, 200), "slow_low": (1, 100),
            "mixed": (1, 250), "campaign": (50, 20), "careful": (1, 200),
            "careful_mixed": (1, 250), "careful_campaign": (50, 20)}


@pytest.fixture(scope="session")
def calibration(tmp_path_factory):
    from distillery.audit import Calibration
    from distillery.audit.offline import calibrate_traffic
    from distillery.audit.simulate import SimConfig, simulate

    reqs, _ = simulate(SimConfig(seed=1, mix=CAL_MIX))
    path = tmp_path_factory.mktemp("cal") / "calibration.npz"
    calibrate_traffic(reqs, "hashing").save(path)
    return Calibration.load(path), path


@pytest.fixture(scope="session")
def eval_mix():
    return EVAL_MIX


@pytest.fixture(scope="session")
def sim_gateway():
    """start(url, **serve settings) -> a running gateway (stop it when done)."""
    return _start


def _start(url: str, **cfg):
    store.migrate(url)
    config = ServeConfig(database=url, port=0, model="fake", watermark="none",
                         log_level="warning", rpm_limit=10**6, tpm_limit=10**9,
                         auth_cache_ttl_s=0.0, usage_interval_s=0.005, **cfg)
    return start_in_thread(config, engine=FakeEngine())
