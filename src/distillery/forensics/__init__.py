"""Forensics: was a suspect model trained on our watermarked outputs, and through which accounts?

    from distillery.forensics import ForensicsConfig, run_check
    verdict = run_check(ForensicsConfig(suspect="runs/x/student-run/student",
                                        database="sqlite:///gateway.db"))

Reading mode on open weights (reading.py), answers of a closed model (api.py), the exact tests
with their controls (evidence.py, check.py) and the planner (planner.py).
"""

from distillery.forensics.check import (
    AccountResult,
    Analysis,
    ControlSummary,
    Verdict,
    analyse,
    control_keys,
    verdict_for,
)
from distillery.forensics.config import ForensicsConfig
from distillery.forensics.evidence import Candidates, KeyScore, key_results, pool
from distillery.forensics.planner import Plan, plan, tokens_needed
from distillery.forensics.reading import Reader, TextRow

__all__ = [
    "AccountResult", "Analysis", "Candidates", "ControlSummary", "ForensicsConfig", "KeyScore",
    "Plan", "Reader", "TextRow", "Verdict", "analyse", "control_keys", "key_results", "plan",
    "pool", "run_check", "tokens_needed", "verdict_for",
]


def run_check(*args, **kwargs):
    """See forensics.run.run_check (imported lazily: it loads models)."""
    from distillery.forensics.run import run_check as _run

    return _run(*args, **kwargs)
