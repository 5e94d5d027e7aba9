"""The graded policy: alarms become strikes, strikes become flag -> throttle -> block.

A window alarms when its combined p-value is <= flag_fpr. An alarm is a new strike only when
at least `strike_gap` of the window's rows arrived after the previous strike (the same rows
cannot strike twice). Strikes count since the account's last operator decision, so an
override starts the account afresh. The auditor only escalates: 1 strike flags, throttle_strikes
throttle, block_strikes block when the last alarm is also <= block_fpr. Lowering a status is the
operator's (`distillery audit override`).
"""

from __future__ import annotations

from dataclasses import dataclass

from distillery.audit.config import AuditConfig

LEVEL = {"active": 0, "flagged": 1, "throttled": 2, "blocked": 3}
ACTION = {"flagged": "flag", "throttled": "throttle", "blocked": "block"}


@dataclass(frozen=True)
class StrikeState:
    strikes: int = 0
    last_usage_id: int = 0  # the newest row of the last strike's window


@dataclass(frozen=True)
class Verdict:
    strike: bool
    strikes: int
    status: str  # the status after this verdict
    action: str | None  # flag | throttle | block | alarm (a strike without a status change)


def decide(p_value: float, window_ids: list[int], status: str, state: StrikeState,
           cfg: AuditConfig) -> Verdict:
    if p_value > cfg.flag_fpr:
        return Verdict(False, state.strikes, status, None)
    fresh = sum(i > state.last_usage_id for i in window_ids)
    if state.strikes and fresh < cfg.strike_gap:
        return Verdict(False, state.strikes, status, None)
    strikes = state.strikes + 1
    target = "flagged"
    if strikes >= cfg.throttle_strikes:
        target = "throttled"
    if strikes >= cfg.block_strikes and p_value <= cfg.block_fpr:
        target = "blocked"
    if LEVEL[target] <= LEVEL.get(status, 0):
        return Verdict(True, strikes, status, "alarm")
    return Verdict(True, strikes, target, ACTION[target])
