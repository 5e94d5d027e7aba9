"""A forensic check: was this suspect trained on our outputs, and through which accounts?

    texts (usage store / dataset) or prompts -> suspect (open: reading mode; api: answers)
    -> candidates -> global layer: one test with the provider key ("trained on our outputs",
    however many accounts a campaign used) -> account layer: every account key of the ring,
    and pooled clusters of accounts -> the same for >= 100 control keys that never served
    anyone, and for a clean reference model on the same inputs -> verdict.

Error control. Two families share alpha: the global test at alpha / 2, and the attribution
family (every account key and every cluster) at alpha / 2 with Holm's step-down; the p-values
reported as adjusted carry those factors. "detected" means the global test rejected;
accounts are "named" when their adjusted p <= alpha. A global score significantly *below*
the clean reference's on the same inputs (or below chance, without a reference) says
"tampering suspected": key-aware scrubbing pushes green tokens down, which a clean model does
not (REFERENCES, Pan et al.).

Which text to read. A key's test is exact when the text fed in was not marked with that key
(unmarked teacher text, or another account's): the suspect's choice then depends on nothing
the key decided. On text marked with the tested key (the usage store's own answers) it is
conservative: excluding the text's tuples also removes candidates that were likelier to be
green (they were likelier to occur), so a clean model scores below gamma and the p-value is
larger than it should be; valid, with less power, and the lower tail must be read against the
reference, never against gamma (below_reference). On unmarked text (--fresh N, or a dataset
declared unmarked) the text's own tuples are scored too: nothing in it depends on a key, and
they hold the tokens a student now ranks first where its base did not (BENCHMARKS,
Forensics). Below the tokens the planner needs for `min_shift`, a negative result is
"inconclusive", never "not detected".
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import binom, fisher_exact, kstest, norm

from distillery.forensics.evidence import (
    Candidates,
    KeyScore,
    key_results,
    mass_results,
    pool,
)
from distillery.forensics.planner import Plan, plan
from distillery.stats import holm_bonferroni
from distillery.watermark.keys import WatermarkKey
from distillery.watermark.scheme import Layer, WatermarkScheme

log = logging.getLogger(__name__)
MODES = ("open", "api")


# what a careful thief does to this signal (forensics/scrub.py), as measured on real students
SCRUBBING_NOTE = (
    "a negative verdict does not clear a suspect whose owner scrubbed it: paraphrasing the "
    "harvest before training took a Gemma-3-270M student from z 8.6 to 3.3 (p 6e-4, "
    "inconclusive), and neutralising what it serves (Pan et al.) took 11-16% off its z "
    "(BENCHMARKS.md, Forensics, session 22)")


def control_keys(n: int) -> list[WatermarkKey]:
    """n keys that never served anyone: fixed (reproducible reports), independent of every
    ring (their secrets come from a public label, not from a master key)."""
    out = []
    for i in range(n):
        secret = hashlib.sha256(f"distillery-forensics/control/{i}".encode()).digest()
        out.append(WatermarkKey(f"control:{i:04d}", "account", 0, None, secret))
    return out


@dataclass(frozen=True)
class AccountResult:
    name: str  # an account, or "cluster:<name>" for a pooled cluster
    members: tuple[str, ...]
    result: KeyScore
    adjusted_p: float  # Holm over the attribution family, times 2 (alpha split)
    named: bool


@dataclass(frozen=True)
class ControlSummary:
    layer: Layer
    n_keys: int
    p_values: tuple[float, ...]
    min_p: float
    median_p: float
    ks_p: float  # KS of the randomized p-values against uniform: small means the null is off
    frac_below_01: float


@dataclass
class Analysis:
    """One model's evidence tested: the global layer, the accounts, the controls."""

    global_result: KeyScore
    global_adjusted_p: float
    accounts: list[AccountResult]
    controls: list[ControlSummary]

    @property
    def named(self) -> list[str]:
        return [a.name for a in self.accounts if a.named]


@dataclass
class Verdict:
    verdict: str  # detected | not detected | inconclusive | tampering suspected
    mode: str
    suspect: str
    scheme: str
    alpha: float
    suspect_analysis: Analysis
    reference: str | None
    reference_analysis: Analysis | None
    plan: Plan
    usage: dict  # rows, tokens read or generated, candidates, what was lost on the way
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    # argmax (top-1 tuples, exact) | mass (green mass, Bernstein) | shift (the green mass of
    # the suspect's difference from its clean base, Bernstein)
    statistic: str = "argmax"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["plan"] = self.plan.to_dict()
        return d


STATISTICS = ("argmax", "mass", "shift", "disagree")


def layer_results(statistic: str):
    """The per-key test of a statistic: top-1 tuples (exact; all of them, or those where the
    suspect's top-1 differs from its reference's: disagreement_candidates) or the green mass
    (of the suspect's distribution, or of its shift from its reference: shift_candidates)."""
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    return key_results if statistic in ("argmax", "disagree") else mass_results


def randomized_p(scheme: WatermarkScheme, r: KeyScore, u: float) -> float:
    """P(S > s) + u P(S = s): exactly uniform under H0 for a discrete (binomial) statistic,
    so a KS test of many keys' p-values is not failed by the lattice alone (few tuples). For
    the green mass, the normal tail of z: the controls then check the null variance itself
    (the reported p, a Bernstein bound, is conservative, so not uniform)."""
    if r.var is not None:
        return float(norm.sf(r.z))
    if scheme.name != "kgw" or not r.n_scored:
        return r.p_value
    s, n = int(r.score), r.n_scored
    return float(binom.sf(s, n, scheme.gamma) + u * binom.pmf(s, n, scheme.gamma))


def summarise_controls(results: Sequence[KeyScore], layer: Layer,
                       scheme: WatermarkScheme) -> ControlSummary:
    p = np.array([r.p_value for r in results])
    u = np.random.default_rng(0).random(len(results))  # fixed: a report reads the same twice
    pr = [randomized_p(scheme, r, x) for r, x in zip(results, u, strict=True)]
    ks = float(kstest(pr, "uniform").pvalue) if len(p) else float("nan")
    return ControlSummary(layer, len(p), tuple(float(x) for x in p), float(p.min()),
                          float(np.median(p)), ks, float((p <= 0.01).mean()))


def analyse(c: Candidates, scheme: WatermarkScheme, accounts: dict[str, WatermarkKey],
            clusters: dict[str, Sequence[str]], controls: Sequence[WatermarkKey],
            alpha: float, statistic: str = "argmax") -> Analysis:
    """Candidates -> the global test, the attribution family, the controls (both layers)."""
    score_keys = layer_results(statistic)
    g = score_keys(c, scheme, "global", [scheme.global_key])[0]
    acc = score_keys(c, scheme, "account", list(accounts.values())) if accounts else []
    by_name = dict(zip(accounts, acc, strict=True))
    family: list[tuple[str, tuple[str, ...], KeyScore]] = [
        (n, (n,), r) for n, r in by_name.items()]
    for name, members in clusters.items():
        missing = [m for m in members if m not in by_name]
        if missing:
            raise ValueError(f"cluster {name!r} names accounts that are not tested: {missing}")
        family.append((f"cluster:{name}", tuple(members),
                       pool(scheme, f"cluster:{name}", [by_name[m] for m in members])))
    adj = np.minimum(2 * holm_bonferroni([f[2].p_value for f in family]), 1.0) if family \
        else np.zeros(0)
    results = sorted((AccountResult(n, m, r, float(a), bool(a <= alpha))
                      for (n, m, r), a in zip(family, adj, strict=True)),
                     key=lambda a: a.adjusted_p)
    ctl = [summarise_controls(score_keys(c, scheme, layer, controls), layer, scheme)
           for layer in ("global", "account")] if controls else []
    return Analysis(g, min(2 * g.p_value, 1.0), results, ctl)


def below_reference(s: KeyScore, r: KeyScore, scheme: WatermarkScheme) -> float:
    """One-sided p that the suspect's rate is below the clean reference's on the same inputs:
    Fisher's exact test (KGW green counts), a normal test of two means of unit-variance
    scores (Gumbel). Reading our *marked* text, the exclusion of its tuples lowers a clean
    model's green rate below gamma too (a candidate that would be green was likelier to
    occur in the text, hence excluded): the reference, not gamma, is then the yardstick."""
    if not s.n_scored or not r.n_scored:
        return 1.0
    if s.var is not None:  # green mass: rates of two independent sums, normal
        se = np.sqrt(s.var / s.mass ** 2 + r.var / r.mass ** 2)
        return float(norm.cdf((s.rate - r.rate) / se)) if se > 0 else 1.0
    if scheme.name == "kgw":
        table = [[s.score, s.n_scored - s.score], [r.score, r.n_scored - r.score]]
        return float(fisher_exact(table, alternative="less").pvalue)
    z = (s.rate - r.rate) / np.sqrt(1 / s.n_scored + 1 / r.n_scored)
    return float(norm.cdf(z))


def decide(a: Analysis, pl: Plan, alpha: float, tamper_alpha: float,
           p_tamper: float | None = None) -> str:
    """p_tamper: the suspect below its reference (below_reference); None: below gamma."""
    g = a.global_result
    if a.global_adjusted_p <= alpha:
        return "detected"
    if (g.p_lower if p_tamper is None else p_tamper) <= tamper_alpha:
        return "tampering suspected"
    if a.named:
        return "detected (account layer)"
    if g.n_scored < pl.tokens_for_min_shift:
        return "inconclusive"
    return "not detected"


def read_in_budget(read, rows: Sequence, scheme: WatermarkScheme, budget_tokens: int | None,
                   chunk_rows: int = 16, statistic: str = "argmax") -> Candidates:
    """read(rows) -> Candidates, a chunk of rows at a time until the global layer's scored
    count reaches the budget (a count of the suspect's own tuples: a valid stopping rule), or
    the rows run out (budget None). info["trace"]: (scored, global p) after each chunk, for
    plots of p against tokens scored; the verdict uses the last point only (the fixed budget),
    never the trajectory's minimum."""
    parts: list[Candidates] = []
    trace: list[tuple[int, float]] = []
    consumed = 0
    for lo in range(0, len(rows), chunk_rows):
        parts.append(read(rows[lo: lo + chunk_rows]))
        consumed = min(lo + chunk_rows, len(rows))
        c = Candidates.concat(parts, scheme.window)
        g = layer_results(statistic)(c, scheme, "global", [scheme.global_key])[0]
        trace.append((g.n_scored, g.p_value))
        if budget_tokens is not None and g.n_scored >= budget_tokens:
            break
    c = Candidates.concat(parts, scheme.window)  # sums rows, tokens and info
    c.info["rows_read"] = consumed
    c.info["trace"] = trace
    return c


def verdict_for(c: Candidates, scheme: WatermarkScheme, accounts: dict[str, WatermarkKey],
                *, mode: str, suspect: str, clusters: dict[str, Sequence[str]] | None = None,
                n_controls: int = 100, alpha: float = 1e-6, tamper_alpha: float = 1e-3,
                min_shift: float = 0.005, reference: str | None = None,
                reference_candidates: Candidates | None = None,
                statistic: str = "argmax") -> Verdict:
    """The verdict on candidates already read (the library entry point for tests and the
    closed loop; run_check in cli/forensics.py loads the models and reads them)."""
    t0 = time.perf_counter()
    clusters = clusters or {}
    ctl = control_keys(n_controls)
    a = analyse(c, scheme, accounts, clusters, ctl, alpha, statistic)
    rows_per_token = c.n_rows / a.global_result.n_scored if a.global_result.n_scored else None
    pl = plan(scheme, a.global_result, target_p=alpha / 2, n_keys=1, min_shift=min_shift,
              rows_per_token=rows_per_token)
    ref = None
    if reference_candidates is not None:
        ref = analyse(reference_candidates, scheme, accounts, clusters, ctl, alpha, statistic)
    usage = {"rows": c.n_rows, "tokens": c.n_tokens, "candidates": len(c),
             "scored_global": a.global_result.n_scored, **c.info}
    p_tamper = None
    if ref is not None:
        p_tamper = below_reference(a.global_result, ref.global_result, scheme)
        usage["p_below_reference"] = p_tamper
        usage["reference_trace"] = reference_candidates.info.get("trace")
    v = Verdict(decide(a, pl, alpha, tamper_alpha, p_tamper), mode, suspect, scheme.name,
                alpha, a, reference, ref, pl, usage, time.perf_counter() - t0,
                statistic=statistic)
    if ref is not None and ref.global_adjusted_p <= alpha:
        v.notes.append("the clean reference is detected too: the inputs, not the suspect, "
                       "carry the signal; do not rely on this verdict")
    if v.verdict in ("inconclusive", "not detected"):
        v.notes.append(SCRUBBING_NOTE)
    for s in a.controls:
        if s.ks_p < 1e-3:
            v.notes.append(f"control keys on the {s.layer} layer are not uniform "
                           f"(KS p {s.ks_p:.2g}): the null is off for these inputs")
    return v


def write_json(v: Verdict, path: str | Path) -> None:
    import json

    Path(path).write_text(json.dumps(v.to_dict(), indent=2, default=str))
