"""The graded policy: strikes on fresh rows, flag -> throttle -> block, never a downgrade."""

from __future__ import annotations

import pytest

from distillery.audit.config import AuditConfig
from distillery.audit.policy import StrikeState, decide

CFG = AuditConfig(flag_fpr=0.01, block_fpr=0.001, throttle_strikes=2, block_strikes=3,
                  strike_gap=20)


def test_escalation_on_fresh_rows():
    v1 = decide(1e-4, list(range(1, 51)), "active", StrikeState(), CFG)
    assert (v1.strike, v1.strikes, v1.status, v1.action) == (True, 1, "flagged", "flag")
    v2 = decide(1e-4, list(range(21, 71)), v1.status, StrikeState(1, 50), CFG)
    assert (v2.status, v2.action) == ("throttled", "throttle")
    v3 = decide(1e-4, list(range(41, 91)), v2.status, StrikeState(2, 70), CFG)
    assert (v3.status, v3.action) == ("blocked", "block")


def test_the_same_rows_do_not_strike_twice():
    v = decide(1e-4, list(range(1, 51)), "flagged", StrikeState(1, 45), CFG)
    assert not v.strike and v.status == "flagged"


def test_block_needs_strong_evidence():
    v = decide(0.005, list(range(100, 150)), "throttled", StrikeState(2, 10), CFG)
    assert v.strike and v.status == "throttled" and v.action == "alarm"


def test_no_alarm_above_flag_fpr_and_no_downgrade():
    assert decide(0.02, [1, 2, 3], "active", StrikeState(), CFG).action is None
    v = decide(0.005, list(range(1, 51)), "blocked", StrikeState(), CFG)
    assert v.status == "blocked" and v.action == "alarm"


@pytest.mark.parametrize("bad", [dict(flag_fpr=0), dict(block_fpr=0.5),
                                 dict(throttle_strikes=4), dict(strike_gap=0)])
def test_config_validation(bad):
    with pytest.raises(ValueError):
        AuditConfig(**bad)
