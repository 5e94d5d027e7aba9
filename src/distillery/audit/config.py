"""AuditConfig: what an audit pass and its policy take, validated, loadable from TOML."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class AuditConfig:
    calibration: str | None = None  # `distillery audit calibrate` output (.npz); required to run
    # policy: a window alarms when its combined p-value (calibrated on benign windows) <= flag_fpr
    flag_fpr: float = 0.01
    block_fpr: float = 0.003  # a block also needs this strong an alarm (and block_strikes)
    throttle_strikes: int = 2  # alarms on fresh rows before an account is throttled
    block_strikes: int = 3
    strike_gap: int = 20  # rows new since the last strike for an alarm to count as a new one
    enforce: bool = True  # False: decisions are recorded but accounts.status is left alone
    # clusters of coordinated accounts (cluster.py)
    clusters: bool = True
    cluster_eps: float = 0.7
    cluster_min_accounts: int = 5
    cluster_horizon_s: float = 86_400.0  # accounts active this recently (simulated time) join
    # the distance matrix is dense (A x A): beyond this many recently active accounts, only
    # the most recently active are clustered (a warning says so)
    cluster_max_accounts: int = 3000
    ua_weight: float = 0.5
    template_weight: float = 0.3
    read_batch: int = 2000  # usage rows read (and embedded) per step of a pass
    interval_s: float = 10.0  # the gateway's background auditor: seconds between passes

    def __post_init__(self) -> None:
        for name in ("flag_fpr", "block_fpr"):
            v = getattr(self, name)
            if not 0 < v < 1:
                raise ValueError(f"{name} must be in (0, 1), got {v}")
        if self.block_fpr > self.flag_fpr:
            raise ValueError("block_fpr must be <= flag_fpr (a block needs stronger evidence)")
        if not 1 <= self.throttle_strikes <= self.block_strikes:
            raise ValueError("need 1 <= throttle_strikes <= block_strikes")
        for name in ("strike_gap", "cluster_min_accounts", "read_batch", "cluster_max_accounts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.interval_s <= 0 or self.cluster_eps <= 0:
            raise ValueError("interval_s and cluster_eps must be positive")

    @classmethod
    def from_toml(cls, path: str | Path | None = None, **overrides) -> AuditConfig:
        """Values from a TOML file (top level or a [audit] table), then non-None overrides."""
        from distillery.config import load_config

        return load_config(cls, path, section="audit", **overrides)
