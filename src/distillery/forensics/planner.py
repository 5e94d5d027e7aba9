"""How many scored tokens a radioactivity test needs, from a pilot; and when "not detected"
may be said at all.

The inherited signal is a shift of the green rate of under a point (REFERENCES
"Radioactivity": 0.2588 against gamma = 0.25 in Sander et al.'s run), so a test on too few
tokens says nothing. From a pilot's de-duplicated count (S green of T for KGW, summed score for
Gumbel) the shift eps is estimated with a confidence interval (Clopper-Pearson for KGW, the
normal interval of a mean of unit-variance scores for Gumbel), and the tokens needed for a
one-sided test at level target_p / n_keys (Bonferroni over the keys tested) to reach that level
with the given power is the normal-approximation sample size

    n = ((z_{1 - a} s0 + z_{power} s1) / eps)^2,   s0^2 = gamma (1 - gamma), s1^2 = q (1 - q),
                                                    q = gamma + eps (KGW; s0 = s1 = 1 Gumbel)

(REFERENCES' rule n ~ 2 gamma (1 - gamma) ln(N / alpha) / eps^2 is its power-1/2 limit).
A verdict below the tokens needed for `min_shift` is "inconclusive", never "not detected".
The pilot's tokens must not be reused in the planned test (its size was chosen by them).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from scipy.stats import beta, norm

from distillery.forensics.evidence import KeyScore
from distillery.watermark.scheme import WatermarkScheme


@dataclass(frozen=True)
class Plan:
    n_pilot: int  # de-duplicated tuples in the pilot
    rate: float  # green rate (KGW) or mean score (Gumbel) in the pilot
    null_rate: float  # gamma, or 1
    shift: float  # rate - null_rate
    shift_ci: tuple[float, float]
    target_p: float
    n_keys: int
    power: float
    tokens_needed: float | None  # at the estimated shift (None when it is <= 0)
    tokens_needed_ci: tuple[float | None, float | None]  # at the CI's upper and lower shift
    min_shift: float
    tokens_for_min_shift: int  # below this, "not detected" is refused
    rows_per_token: float | None = None  # rows (texts, queries) per scored tuple, if known

    def rows_needed(self, tokens: float | None) -> float | None:
        return None if tokens is None or self.rows_per_token is None else \
            tokens * self.rows_per_token

    def to_dict(self) -> dict:
        d = asdict(self)
        d["queries_needed"] = self.rows_needed(self.tokens_needed)
        d["queries_for_min_shift"] = self.rows_needed(self.tokens_for_min_shift)
        return d


def _null(scheme: WatermarkScheme) -> tuple[float, float]:
    if scheme.name == "kgw":
        return scheme.gamma, math.sqrt(scheme.gamma * (1 - scheme.gamma))
    return 1.0, 1.0


def tokens_needed(scheme: WatermarkScheme, shift: float, target_p: float = 1e-6,
                  n_keys: int = 1, power: float = 0.9) -> float | None:
    """Scored tuples for a one-sided test at target_p / n_keys to reject with `power` when
    the rate is shifted by `shift` (None: no positive shift, no sample size)."""
    if not shift > 0:
        return None
    null, s0 = _null(scheme)
    if scheme.name == "kgw":
        q = min(null + shift, 1 - 1e-9)
        s1 = math.sqrt(q * (1 - q))
    else:
        s1 = 1.0
    za, zb = norm.isf(target_p / n_keys), norm.ppf(power)
    return ((za * s0 + zb * s1) / shift) ** 2


def plan(scheme: WatermarkScheme, pilot: KeyScore, target_p: float = 1e-6, n_keys: int = 1,
         power: float = 0.9, min_shift: float = 0.005, confidence: float = 0.95,
         rows_per_token: float | None = None) -> Plan:
    """The shift a pilot shows, with its CI, and the scored tokens a planned test needs."""
    if pilot.var is not None:
        return _plan_mass(scheme, pilot, target_p, n_keys, power, min_shift, confidence,
                          rows_per_token)
    null, _ = _null(scheme)
    n, s = pilot.n_scored, pilot.score
    a = 1 - confidence
    if n == 0:
        rate, lo, hi = float("nan"), float("nan"), float("nan")
    elif scheme.name == "kgw":
        rate = s / n
        lo = float(beta.ppf(a / 2, s, n - s + 1)) if s > 0 else 0.0
        hi = float(beta.ppf(1 - a / 2, s + 1, n - s)) if s < n else 1.0
    else:
        rate = s / n
        half = norm.isf(a / 2) / math.sqrt(n)
        lo, hi = rate - half, rate + half

    def need(eps: float) -> float | None:
        return tokens_needed(scheme, eps, target_p, n_keys, power)

    return Plan(n, rate, null, rate - null, (lo - null, hi - null), target_p, n_keys, power,
                need(rate - null), (need(hi - null), need(lo - null)), min_shift,
                math.ceil(need(min_shift)), rows_per_token)


def _plan_mass(scheme: WatermarkScheme, pilot: KeyScore, target_p: float, n_keys: int,
               power: float, min_shift: float, confidence: float,
               rows_per_token: float | None) -> Plan:
    """The green mass (evidence.mass_results): shift = green mass per unit of mass - gamma,
    with a normal CI; windows needed n = ((sqrt(2 ln(n_keys / p)) + z_power) sqrt(v) /
    (shift a))^2 for per-window null variance v and mass a, the sub-Gaussian part of the
    Bernstein bound the test uses (its linear term asks a few percent more)."""
    g, n = scheme.gamma, pilot.n_scored
    if n == 0 or not pilot.mass:
        rate, lo, hi, a_bar, v = (float("nan"),) * 5
    else:
        rate, a_bar, v = pilot.score / pilot.mass, pilot.mass / n, pilot.var / n
        half = norm.isf((1 - confidence) / 2) * math.sqrt(pilot.var) / pilot.mass
        lo, hi = rate - half, rate + half
    za, zb = math.sqrt(2 * math.log(n_keys / target_p)), norm.ppf(power)

    def need(eps: float) -> float | None:
        if not eps > 0 or not v > 0:
            return None
        return ((za + zb) * math.sqrt(v) / (eps * a_bar)) ** 2

    at_min = need(min_shift)
    return Plan(n, rate, g, rate - g, (lo - g, hi - g), target_p, n_keys, power,
                need(rate - g), (need(hi - g), need(lo - g)), min_shift,
                math.ceil(at_min) if at_min is not None else 0, rows_per_token)
