"""Verdict rules: what the run records say about each claim, with the evidence.

Verdicts:
- `reproduced` / `not_reproduced`: the confidence interval settles the claim.
- `inconclusive`: it does not (too few seeds, an interval straddling the line); says why.
- `not_attempted`: the claim or paper is out of scope, or only stub data was available.
- `not_run`: no run records for the arms the claim needs.
- `indicative`: runs exist only at a tier where the claim is not judged (or below the
  judged tier used): the estimate and its gap are shown, no verdict.

Every verdict carries its tier, n, estimate, interval and the rule applied, in words.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from shortsci_bench.claims.schema import (
    OrderingClaim,
    PaperClaims,
    PropertyClaim,
    ValueClaim,
)
from shortsci_bench.collect.records import (
    STATUSES,
    TIER_RANK,
    TIERS,
    ArmRuns,
    GroupKey,
    metric_values,
)
from shortsci_bench.collect.stats import Summary, seeds_needed, summarize

VERDICTS: tuple[str, ...] = (
    "reproduced",
    "not_reproduced",
    "inconclusive",
    "not_attempted",
    "not_run",
    "indicative",
)
STUB_REASON = "trained on stub data (TIMIT not available)"
PAPER_ROW = "-"  # claim id of the row standing for a paper that has no claims


@dataclass
class Verdict:
    """One verdict (or indicative estimate) for one claim at one tier, with its evidence."""

    paper: str
    claim: str
    kind: str
    experiment: str | None
    verdict: str
    why: str
    tier: str | None = None
    judged: bool = True  # False for indicative rows
    metric: str | None = None
    arms: list[str] = field(default_factory=list)
    n: int = 0
    seeds: list[int] = field(default_factory=list)
    estimate: float | None = None
    std: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float = 0.95
    target: str = ""  # what the estimate is compared with, in words
    gap: float | None = None  # estimate minus the target (or margin, or threshold)
    rule: str = ""
    n_needed: int | None = None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # arm -> status -> n
    stub: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def counts_text(self) -> str:
        return format_counts(self.counts)


@dataclass
class ClaimResult:
    """A claim's verdict at its judged tier plus indicative estimates at other tiers."""

    paper: str
    claim: str
    kind: str
    statement: str
    verdict: Verdict
    indicative: list[Verdict] = field(default_factory=list)

    def rows(self) -> list[Verdict]:
        return [self.verdict, *self.indicative]

    def as_dict(self) -> dict[str, Any]:
        return {
            "paper": self.paper,
            "claim": self.claim,
            "kind": self.kind,
            "statement": self.statement,
            "verdict": self.verdict.as_dict(),
            "indicative": [v.as_dict() for v in self.indicative],
        }


def format_counts(counts: dict[str, dict[str, int]]) -> str:
    """'bn: 5 completed, 1 diverged; plain: 5 completed' (zero counts left out)."""
    parts = []
    for arm, c in counts.items():
        nonzero = [f"{c[s]} {s}" for s in STATUSES if c.get(s)]
        parts.append(f"{arm}: {', '.join(nonzero) if nonzero else 'no runs'}")
    return "; ".join(parts)


def fmt(x: float | None) -> str:
    """Numbers in verdict texts: four significant figures."""
    if x is None:
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.4g}"


@dataclass
class _ArmSample:
    values: dict[int, float]  # seed -> final metric value (completed runs only)
    counts: dict[str, int]
    stub: bool
    missing: int  # completed runs lacking the metric (or with NaN/inf)


def _arm_sample(groups: dict[GroupKey, ArmRuns], key: GroupKey, metric: str) -> _ArmSample:
    group = groups.get(key)
    if group is None:
        return _ArmSample({}, dict.fromkeys(STATUSES, 0), False, 0)
    real = group.latest_completed(stub=False)
    # Real-data runs win; stub runs are used only when nothing else exists (and then flagged).
    by_seed = real if real else group.latest_completed(stub=True)
    stub = not real and group.has_stub()
    values = metric_values(by_seed, metric)
    return _ArmSample(values, group.counts(), stub, len(by_seed) - len(values))


def _claim_arms(claim) -> list[tuple[str, str]]:
    """(arm, metric) pairs a claim reads."""
    if isinstance(claim, OrderingClaim):
        if claim.better is None or claim.worse is None:
            return []
        return [
            (claim.better.arm, claim.better.metric or claim.metric),
            (claim.worse.arm, claim.worse.metric or claim.metric),
        ]
    arm = getattr(claim, "arm", None)
    return [(arm, claim.metric)] if arm else []


def _pct(confidence: float) -> str:
    return f"{confidence * 100:g}%"


def _no_data_why(metric: str, samples: dict[str, _ArmSample]) -> str:
    missing = sum(s.missing for s in samples.values())
    extra = f" ({missing} completed without it)" if missing else ""
    return f"no completed runs with metric {metric}{extra}"


def _interval_gate(s: Summary, min_seeds: int) -> str | None:
    """Why the interval cannot decide yet, or None when it can."""
    if s.n < min_seeds:
        return f"underpowered: n={s.n} < min_seeds={min_seeds}"
    if s.ci_low is None:
        return f"interval undefined with n={s.n}: one seed gives no spread"
    return None


def _fill(v: Verdict, s: Summary) -> None:
    v.n, v.estimate, v.std = s.n, s.mean, s.std
    v.ci_low, v.ci_high, v.confidence = s.ci_low, s.ci_high, s.confidence


def _arm_interval(
    v: Verdict, claim: ValueClaim | PropertyClaim, groups, tier: str, reference: float
) -> Summary | None:
    """The interval of one arm's mean metric over seeds, recorded in `v` with its gap to
    `reference`; None, with `v` left inconclusive, when there is nothing to decide on."""
    sample = _arm_sample(groups, (claim.experiment, claim.arm, tier), claim.metric)
    v.counts, v.stub = {claim.arm: sample.counts}, sample.stub
    if not sample.values:
        v.verdict, v.why = "inconclusive", _no_data_why(claim.metric, {claim.arm: sample})
        return None
    s = summarize(sample.values.values(), claim.stats.confidence)
    _fill(v, s)
    v.seeds = sorted(sample.values)
    v.gap = s.mean - reference
    gate = _interval_gate(s, claim.stats.min_seeds)
    if gate:
        v.verdict, v.why = "inconclusive", gate
        return None
    return s


def _value_tolerance(claim: ValueClaim) -> tuple[float, str]:
    if claim.tolerance is not None:
        return claim.tolerance, "the claim's tolerance"
    if claim.n_eval and claim.target is not None and 0.0 <= claim.target <= 1.0:
        # Binomial noise of an accuracy/error over n_eval examples; p kept off 0 and 1 so a
        # claimed 0% error still allows the one-example noise floor.
        p = min(max(claim.target, 1.0 / claim.n_eval), 1.0 - 1.0 / claim.n_eval)
        tol = 2.0 * math.sqrt(p * (1.0 - p) / claim.n_eval)
        return tol, f"binomial noise 2*sqrt(p(1-p)/n_eval), n_eval={claim.n_eval}"
    return 0.0, "no tolerance and no n_eval: a point target"


def _judge_value(v: Verdict, claim: ValueClaim, groups, tier: str) -> None:
    tol, tol_words = _value_tolerance(claim)
    lo_band, hi_band = claim.target - tol, claim.target + tol
    conf = claim.stats.confidence
    v.target = f"{fmt(claim.target)} ± {fmt(tol)}"
    v.rule = (
        f"value: the {_pct(conf)} t-interval of the mean {claim.metric} of arm {claim.arm} "
        f"over seeds must lie within {fmt(claim.target)} ± {fmt(tol)} ({tol_words}); "
        "wholly outside = not reproduced"
    )
    s = _arm_interval(v, claim, groups, tier, claim.target)
    if s is None:
        return
    if s.ci_low >= lo_band and s.ci_high <= hi_band:
        v.verdict = "reproduced"
        v.why = (
            f"CI [{fmt(s.ci_low)}, {fmt(s.ci_high)}] lies within [{fmt(lo_band)}, {fmt(hi_band)}]"
        )
    elif s.ci_high < lo_band or s.ci_low > hi_band:
        v.verdict = "not_reproduced"
        v.why = (
            f"CI [{fmt(s.ci_low)}, {fmt(s.ci_high)}] lies outside [{fmt(lo_band)}, {fmt(hi_band)}]"
        )
    else:
        v.verdict = "inconclusive"
        v.why = (
            f"CI [{fmt(s.ci_low)}, {fmt(s.ci_high)}] straddles an edge of "
            f"[{fmt(lo_band)}, {fmt(hi_band)}]"
        )


def _judge_ordering(v: Verdict, claim: OrderingClaim, groups, tier: str) -> None:
    b_metric = claim.better.metric or claim.metric
    w_metric = claim.worse.metric or claim.metric
    b = _arm_sample(groups, (claim.experiment, claim.better.arm, tier), b_metric)
    w = _arm_sample(groups, (claim.experiment, claim.worse.arm, tier), w_metric)
    v.counts = {claim.better.arm: b.counts, claim.worse.arm: w.counts}
    v.stub = b.stub or w.stub
    conf = claim.stats.confidence
    d_words = "better - worse" if claim.higher_is_better else "worse - better (lower is better)"
    v.target = f"mean d > {fmt(claim.margin)}"
    v.rule = (
        f"ordering: pair {claim.better.arm} and {claim.worse.arm} by seed; "
        f"d = {d_words} on {b_metric}"
        + (f" vs {w_metric}" if w_metric != b_metric else "")
        + f"; reproduced if the {_pct(conf)} t-interval of mean d lies above the margin "
        f"{fmt(claim.margin)}, not reproduced if wholly below; min_seeds={claim.stats.min_seeds}"
    )
    paired = sorted(set(b.values) & set(w.values))
    if not paired:
        if not b.values or not w.values:
            which = {claim.better.arm: b, claim.worse.arm: w}
            v.verdict, v.why = "inconclusive", _no_data_why(b_metric, which)
        else:
            v.verdict = "inconclusive"
            v.why = (
                f"no seed completed in both arms ({claim.better.arm}: {sorted(b.values)}, "
                f"{claim.worse.arm}: {sorted(w.values)})"
            )
        return
    sign = 1.0 if claim.higher_is_better else -1.0
    diffs = [sign * (b.values[s] - w.values[s]) for s in paired]
    s = summarize(diffs, conf)
    _fill(v, s)
    v.seeds = paired
    v.gap = s.mean - claim.margin
    unpaired = len(set(b.values) ^ set(w.values))
    note = f" ({unpaired} unpaired seeds left out)" if unpaired else ""
    gate = _interval_gate(s, claim.stats.min_seeds)
    if gate:
        v.verdict, v.why = "inconclusive", gate + note
    elif s.ci_low > claim.margin:
        v.verdict = "reproduced"
        v.why = f"CI of mean d [{fmt(s.ci_low)}, {fmt(s.ci_high)}] > {fmt(claim.margin)}" + note
    elif s.ci_high < claim.margin:
        v.verdict = "not_reproduced"
        v.why = f"CI of mean d [{fmt(s.ci_low)}, {fmt(s.ci_high)}] < {fmt(claim.margin)}" + note
    else:
        v.verdict = "inconclusive"
        v.n_needed = seeds_needed(s.mean - claim.margin, s.std or 0.0, s.n, conf)
        more = (
            f"; about {v.n_needed} paired seeds would resolve it if mean and spread hold"
            if v.n_needed
            else "; mean d equals the margin: more seeds may not resolve it"
        )
        v.why = (
            f"CI of mean d [{fmt(s.ci_low)}, {fmt(s.ci_high)}] contains {fmt(claim.margin)}"
            + more
            + note
        )


_SATISFIED = {
    "<": lambda lo, hi, t: hi < t,
    "<=": lambda lo, hi, t: hi <= t,
    ">": lambda lo, hi, t: lo > t,
    ">=": lambda lo, hi, t: lo >= t,
}
_VIOLATED = {
    "<": lambda lo, hi, t: lo >= t,
    "<=": lambda lo, hi, t: lo > t,
    ">": lambda lo, hi, t: hi <= t,
    ">=": lambda lo, hi, t: hi < t,
}


def _side(op: str, s: Summary, threshold: float) -> bool | None:
    """Whether the interval lies wholly `op threshold` (True), wholly on the other side
    (False), or straddles it (None)."""
    if _SATISFIED[op](s.ci_low, s.ci_high, threshold):
        return True
    if _VIOLATED[op](s.ci_low, s.ci_high, threshold):
        return False
    return None


def _judge_property(v: Verdict, claim: PropertyClaim, groups, tier: str) -> None:
    conf = claim.stats.confidence
    v.target = f"{claim.op} {fmt(claim.threshold)}"
    v.rule = (
        f"property: the {_pct(conf)} t-interval of the mean {claim.metric} of arm {claim.arm} "
        f"must lie wholly {claim.op} {fmt(claim.threshold)}; wholly on the other side = not "
        "reproduced"
    )
    s = _arm_interval(v, claim, groups, tier, claim.threshold)
    if s is None:
        return
    ci = f"CI [{fmt(s.ci_low)}, {fmt(s.ci_high)}]"
    side = _side(claim.op, s, claim.threshold)
    if side is True:
        v.verdict, v.why = "reproduced", f"{ci} is wholly {claim.op} {fmt(claim.threshold)}"
    elif side is False:
        v.verdict, v.why = (
            "not_reproduced",
            f"{ci} is wholly outside {claim.op} {fmt(claim.threshold)}",
        )
    else:
        v.verdict, v.why = "inconclusive", f"{ci} straddles the threshold {fmt(claim.threshold)}"


_RULES = {"value": _judge_value, "ordering": _judge_ordering, "property": _judge_property}


def _unmet_requirement(claim, groups, tier: str) -> str | None:
    """Why a precondition of the claim does not hold (or cannot be told) at `tier`; None if all hold."""
    for req in claim.requires:
        sample = _arm_sample(groups, (claim.experiment, req.arm, tier), req.metric)
        where = f"{req.arm} {req.metric} {req.op} {fmt(req.threshold)}"
        if not sample.values:
            return f"precondition untested ({where}): no completed runs with that metric"
        s = summarize(sample.values.values(), claim.stats.confidence)
        gate = _interval_gate(s, claim.stats.min_seeds)
        if gate:
            return f"precondition undecided ({where}): {gate}"
        side = _side(req.op, s, req.threshold)
        if side is not True:
            state = "not met" if side is False else "undecided"
            ci = f"mean {fmt(s.mean)}, CI [{fmt(s.ci_low)}, {fmt(s.ci_high)}]"
            return f"precondition {state}: {req.why} ({where}; {ci})"
    return None


def _evaluate(paper: PaperClaims, claim, groups, tier: str, why_not_judged: str | None) -> Verdict:
    arms = _claim_arms(claim)
    v = Verdict(
        paper=paper.slug,
        claim=claim.id,
        kind=claim.kind,
        experiment=claim.experiment,
        verdict="inconclusive",
        why="",
        tier=tier,
        metric=claim.metric,
        arms=[a for a, _ in arms],
        confidence=claim.stats.confidence,
    )
    _RULES[claim.kind](v, claim, groups, tier)
    if v.verdict in ("reproduced", "not_reproduced") and claim.requires:
        # The comparison means nothing until the mechanism it tests is there at all.
        unmet = _unmet_requirement(claim, groups, tier)
        if unmet:
            v.verdict, v.why = "inconclusive", f"{unmet}; the rule alone: {v.verdict}, {v.why}"
    if v.stub:
        # Stub data says nothing about the paper at any tier: never a verdict, never a hint.
        v.judged = why_not_judged is None
        v.verdict, v.why = "not_attempted", f"{STUB_REASON}; the rule alone: {v.why}"
    elif why_not_judged is not None:
        # No verdict at this tier: keep estimate and gap, say why it is only indicative.
        v.judged = False
        v.verdict, v.why = "indicative", f"{why_not_judged}; here: {v.why}"
    return v


def _bare(paper: PaperClaims, claim, verdict: str, why: str, rule: str) -> Verdict:
    return Verdict(
        rule=rule,
        paper=paper.slug,
        claim=claim.id,
        kind=claim.kind,
        experiment=claim.experiment,
        verdict=verdict,
        why=why,
        metric=claim.metric,
        arms=[a for a, _ in _claim_arms(claim)],
        confidence=claim.stats.confidence,
    )


def judge_claim(paper: PaperClaims, claim, groups: dict[GroupKey, ArmRuns]) -> ClaimResult:
    """The verdict of one claim from grouped run records, plus indicative rows."""
    result = ClaimResult(paper.slug, claim.id, claim.kind, claim.statement, verdict=None)  # type: ignore[arg-type]
    if paper.status == "not_attempted":
        result.verdict = _bare(
            paper,
            claim,
            "not_attempted",
            f"paper: {paper.reason}",
            "the paper is marked not_attempted",
        )
        return result
    if claim.status == "not_attempted":
        result.verdict = _bare(
            paper, claim, "not_attempted", claim.reason or "", "the claim is marked not_attempted"
        )
        return result
    arms = [a for a, _ in _claim_arms(claim)]
    with_runs = [t for t in TIERS if any((claim.experiment, a, t) in groups for a in arms)]
    if not with_runs:
        result.verdict = _bare(
            paper,
            claim,
            "not_run",
            f"no runs of {', '.join(arms)} in experiment {claim.experiment}",
            "no run record of the claim's arms at any tier",
        )
        return result
    judged = [t for t in with_runs if t in claim.tiers]
    judged_at = ", ".join(claim.tiers)
    if judged:
        top = max(judged, key=TIER_RANK.__getitem__)
        result.verdict = _evaluate(paper, claim, groups, top, None)
    else:
        top = max(with_runs, key=TIER_RANK.__getitem__)
        result.verdict = _evaluate(
            paper,
            claim,
            groups,
            top,
            f"not judged at tier {top} (judged at: {judged_at})",
        )
    for tier in sorted(with_runs, key=TIER_RANK.__getitem__, reverse=True):
        if tier == top:
            continue
        why = (
            f"below the judged tier {top}"
            if tier in claim.tiers
            else f"not judged at tier {tier} (judged at: {judged_at})"
        )
        result.indicative.append(_evaluate(paper, claim, groups, tier, why))
    return result


def judge_paper(paper: PaperClaims, groups: dict[GroupKey, ArmRuns]) -> list[ClaimResult]:
    """Every claim of a paper; a paper without claims gets one row standing for it."""
    if not paper.claims:
        verdict = "not_attempted" if paper.status == "not_attempted" else "not_run"
        why = paper.reason or "no claims recorded yet"
        v = Verdict(
            paper=paper.slug,
            claim=PAPER_ROW,
            kind="paper",
            experiment=None,
            verdict=verdict,
            why=why,
        )
        return [ClaimResult(paper.slug, PAPER_ROW, "paper", paper.paper.title, v)]
    return [judge_claim(paper, c, groups) for c in paper.claims]
