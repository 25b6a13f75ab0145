"""Verdict rules: what the run records say about each claim, with the evidence.

Verdicts:
- `reproduced` / `not_reproduced`: the confidence interval settles the claim.
- `inconclusive`: it does not (too few seeds, an interval straddling the line); says why.
- `not_attempted`: the claim or paper is out of scope, or only stub data was available.
- `not_run`: no run records for the arms the claim needs.
- `indicative`: runs exist only at a tier where the claim is not judged (or below the
  judged tier used): the estimate and its gap are shown, no verdict.

Every verdict carries its tier, n, estimate, interval and the rule applied, in words.

Structure: each claim kind has a `Rule` object (`RULES`) whose `decide` returns an
immutable `Decision` (an outcome, a reason code and its facts, the evidence); `in_context`
is the one function that applies preconditions, stub data and the tier to it; `render`
turns a decision into words from `WORDING`. Nothing here mutates a verdict after it is built.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from shortsci_bench.claims.schema import (
    OrderingClaim,
    PaperClaims,
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


# --- decisions: what a rule found, as data; the words come later ---------------------


@dataclass(frozen=True)
class Decision:
    """A rule's immutable finding at one tier: an outcome, a reason code with the facts its
    wording needs, and the evidence (interval, seeds, counts) behind it."""

    outcome: str  # reproduced | not_reproduced | inconclusive
    reason: str  # a key of WORDING
    facts: dict[str, Any] = field(default_factory=dict)
    summary: Summary | None = None
    seeds: tuple[int, ...] = ()
    gap: float | None = None
    n_needed: int | None = None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    stub: bool = False
    note: str = ""  # appended to the words (e.g. unpaired seeds left out)


# Reason code -> words. Numbers in facts are formatted by `fmt`; `{ci}` is "CI [lo, hi]".
WORDING = {
    "no_data": "no completed runs with metric {metric}{missing}",
    "unpaired": "no seed completed in both arms ({better}: {better_seeds}, {worse}: {worse_seeds})",
    "underpowered": "underpowered: n={n} < min_seeds={min_seeds}",
    "no_interval": "interval undefined with n={n}: one seed gives no spread",
    "value_within": "{ci} lies within [{lo_band}, {hi_band}]",
    "value_outside": "{ci} lies outside [{lo_band}, {hi_band}]",
    "value_straddles": "{ci} straddles an edge of [{lo_band}, {hi_band}]",
    "d_above": "CI of mean d [{lo}, {hi}] > {margin}",
    "d_below": "CI of mean d [{lo}, {hi}] < {margin}",
    "d_contains": "CI of mean d [{lo}, {hi}] contains {margin}{more}",
    "prop_holds": "{ci} is wholly {op} {threshold}",
    "prop_fails": "{ci} is wholly outside {op} {threshold}",
    "prop_straddles": "{ci} straddles the threshold {threshold}",
}


def render(decision: Decision) -> str:
    """The words of a decision."""
    facts = {k: fmt(v) if isinstance(v, float) else v for k, v in decision.facts.items()}
    s = decision.summary
    if s is not None and s.ci_low is not None:
        facts.setdefault("ci", f"CI [{fmt(s.ci_low)}, {fmt(s.ci_high)}]")
        facts.setdefault("lo", fmt(s.ci_low))
        facts.setdefault("hi", fmt(s.ci_high))
    return WORDING[decision.reason].format(**facts) + decision.note


def _gate(s: Summary, min_seeds: int) -> tuple[str, dict] | None:
    """Why the interval cannot decide yet, or None when it can."""
    if s.n < min_seeds:
        return "underpowered", {"n": s.n, "min_seeds": min_seeds}
    if s.ci_low is None:
        return "no_interval", {"n": s.n}
    return None


def _no_data(metric: str, samples: list[_ArmSample]) -> dict[str, Any]:
    missing = sum(s.missing for s in samples)
    return {"metric": metric, "missing": f" ({missing} completed without it)" if missing else ""}


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


# --- the rules ------------------------------------------------------------------------


class Rule:
    """One claim kind's rule: what the estimate is compared with (`target`), the rule in
    words (`describe`), and the finding at a tier (`decide`). Rules hold no state."""

    kind = ""

    def target(self, claim) -> str:
        raise NotImplementedError

    def describe(self, claim) -> str:
        raise NotImplementedError

    def decide(self, claim, groups: dict[GroupKey, ArmRuns], tier: str) -> Decision:
        raise NotImplementedError


class _OneArmRule(Rule):
    """Rules on one arm's mean over seeds, compared with `reference(claim)`."""

    def reference(self, claim) -> float:
        raise NotImplementedError

    def judge(self, claim, s: Summary) -> tuple[str, str, dict[str, Any]]:
        raise NotImplementedError

    def decide(self, claim, groups, tier):
        sample = _arm_sample(groups, (claim.experiment, claim.arm, tier), claim.metric)
        base = {"counts": {claim.arm: sample.counts}, "stub": sample.stub}
        if not sample.values:
            return Decision("inconclusive", "no_data", _no_data(claim.metric, [sample]), **base)
        s = summarize(sample.values.values(), claim.stats.confidence)
        found = {
            "summary": s,
            "seeds": tuple(sorted(sample.values)),
            "gap": s.mean - self.reference(claim),
        }
        gate = _gate(s, claim.stats.min_seeds)
        if gate:
            return Decision("inconclusive", gate[0], gate[1], **found, **base)
        outcome, reason, facts = self.judge(claim, s)
        return Decision(outcome, reason, facts, **found, **base)


class ValueRule(_OneArmRule):
    """The arm's mean must lie within target +- tolerance: its interval wholly inside the
    band reproduces, wholly outside does not."""

    kind = "value"

    @staticmethod
    def tolerance(claim: ValueClaim) -> tuple[float, str]:
        if claim.tolerance is not None:
            return claim.tolerance, "the claim's tolerance"
        if claim.n_eval and claim.target is not None and 0.0 <= claim.target <= 1.0:
            # Binomial noise of an accuracy/error over n_eval examples; p kept off 0 and 1 so
            # a claimed 0% error still allows the one-example noise floor.
            p = min(max(claim.target, 1.0 / claim.n_eval), 1.0 - 1.0 / claim.n_eval)
            tol = 2.0 * math.sqrt(p * (1.0 - p) / claim.n_eval)
            return tol, f"binomial noise 2*sqrt(p(1-p)/n_eval), n_eval={claim.n_eval}"
        return 0.0, "no tolerance and no n_eval: a point target"

    def reference(self, claim):
        return claim.target

    def target(self, claim):
        return f"{fmt(claim.target)} ± {fmt(self.tolerance(claim)[0])}"

    def describe(self, claim):
        tol, words = self.tolerance(claim)
        return (
            f"value: the {_pct(claim.stats.confidence)} t-interval of the mean {claim.metric} of "
            f"arm {claim.arm} over seeds must lie within {fmt(claim.target)} ± {fmt(tol)} "
            f"({words}); wholly outside = not reproduced"
        )

    def judge(self, claim, s):
        tol = self.tolerance(claim)[0]
        lo_band, hi_band = claim.target - tol, claim.target + tol
        band = {"lo_band": lo_band, "hi_band": hi_band}
        if s.ci_low >= lo_band and s.ci_high <= hi_band:
            return "reproduced", "value_within", band
        if s.ci_high < lo_band or s.ci_low > hi_band:
            return "not_reproduced", "value_outside", band
        return "inconclusive", "value_straddles", band


class PropertyRule(_OneArmRule):
    """The arm's mean must lie wholly on the claimed side of a threshold."""

    kind = "property"

    def reference(self, claim):
        return claim.threshold

    def target(self, claim):
        return f"{claim.op} {fmt(claim.threshold)}"

    def describe(self, claim):
        return (
            f"property: the {_pct(claim.stats.confidence)} t-interval of the mean {claim.metric} "
            f"of arm {claim.arm} must lie wholly {claim.op} {fmt(claim.threshold)}; wholly on "
            "the other side = not reproduced"
        )

    def judge(self, claim, s):
        facts = {"op": claim.op, "threshold": claim.threshold}
        side = _side(claim.op, s, claim.threshold)
        if side is True:
            return "reproduced", "prop_holds", facts
        if side is False:
            return "not_reproduced", "prop_fails", facts
        return "inconclusive", "prop_straddles", facts


class OrderingRule(Rule):
    """`better` beats `worse`: the interval of the seed-paired difference must lie above
    the claimed margin; wholly below does not reproduce."""

    kind = "ordering"

    def target(self, claim):
        return f"mean d > {fmt(claim.margin)}"

    def describe(self, claim):
        b_metric = claim.better.metric or claim.metric
        w_metric = claim.worse.metric or claim.metric
        d_words = "better - worse" if claim.higher_is_better else "worse - better (lower is better)"
        return (
            f"ordering: pair {claim.better.arm} and {claim.worse.arm} by seed; "
            f"d = {d_words} on {b_metric}"
            + (f" vs {w_metric}" if w_metric != b_metric else "")
            + f"; reproduced if the {_pct(claim.stats.confidence)} t-interval of mean d lies "
            f"above the margin {fmt(claim.margin)}, not reproduced if wholly below; "
            f"min_seeds={claim.stats.min_seeds}"
        )

    def decide(self, claim, groups, tier):
        b_metric = claim.better.metric or claim.metric
        w_metric = claim.worse.metric or claim.metric
        b = _arm_sample(groups, (claim.experiment, claim.better.arm, tier), b_metric)
        w = _arm_sample(groups, (claim.experiment, claim.worse.arm, tier), w_metric)
        base = {
            "counts": {claim.better.arm: b.counts, claim.worse.arm: w.counts},
            "stub": b.stub or w.stub,
        }
        paired = sorted(set(b.values) & set(w.values))
        if not paired:
            if not b.values or not w.values:
                return Decision("inconclusive", "no_data", _no_data(b_metric, [b, w]), **base)
            facts = {
                "better": claim.better.arm,
                "better_seeds": sorted(b.values),
                "worse": claim.worse.arm,
                "worse_seeds": sorted(w.values),
            }
            return Decision("inconclusive", "unpaired", facts, **base)
        sign = 1.0 if claim.higher_is_better else -1.0
        s = summarize([sign * (b.values[i] - w.values[i]) for i in paired], claim.stats.confidence)
        unpaired = len(set(b.values) ^ set(w.values))
        found = {
            "summary": s,
            "seeds": tuple(paired),
            "gap": s.mean - claim.margin,
            "note": f" ({unpaired} unpaired seeds left out)" if unpaired else "",
        }
        gate = _gate(s, claim.stats.min_seeds)
        if gate:
            return Decision("inconclusive", gate[0], gate[1], **found, **base)
        margin = {"margin": claim.margin}
        if s.ci_low > claim.margin:
            return Decision("reproduced", "d_above", margin, **found, **base)
        if s.ci_high < claim.margin:
            return Decision("not_reproduced", "d_below", margin, **found, **base)
        needed = seeds_needed(s.mean - claim.margin, s.std or 0.0, s.n, claim.stats.confidence)
        more = (
            f"; about {needed} paired seeds would resolve it if mean and spread hold"
            if needed
            else "; mean d equals the margin: more seeds may not resolve it"
        )
        return Decision(
            "inconclusive", "d_contains", {**margin, "more": more}, n_needed=needed, **found, **base
        )


RULES: dict[str, Rule] = {r.kind: r for r in (ValueRule(), OrderingRule(), PropertyRule())}


def _unmet_requirement(claim, groups, tier: str) -> str | None:
    """Why a precondition of the claim does not hold (or cannot be told) at `tier`; None if all hold."""
    for req in claim.requires:
        sample = _arm_sample(groups, (claim.experiment, req.arm, tier), req.metric)
        where = f"{req.arm} {req.metric} {req.op} {fmt(req.threshold)}"
        if not sample.values:
            return f"precondition untested ({where}): no completed runs with that metric"
        s = summarize(sample.values.values(), claim.stats.confidence)
        gate = _gate(s, claim.stats.min_seeds)
        if gate:
            return f"precondition undecided ({where}): {WORDING[gate[0]].format(**gate[1])}"
        side = _side(req.op, s, req.threshold)
        if side is not True:
            state = "not met" if side is False else "undecided"
            ci = f"mean {fmt(s.mean)}, CI [{fmt(s.ci_low)}, {fmt(s.ci_high)}]"
            return f"precondition {state}: {req.why} ({where}; {ci})"
    return None


def in_context(
    decision: Decision, claim, groups, tier: str, why_not_judged: str | None
) -> tuple[str, str, bool]:
    """The one place where a rule's outcome meets its context: preconditions, stub data and
    the tier. Returns (verdict, why, judged)."""
    verdict, why = decision.outcome, render(decision)
    if verdict in ("reproduced", "not_reproduced") and claim.requires:
        # The comparison means nothing until the mechanism it tests is there at all.
        unmet = _unmet_requirement(claim, groups, tier)
        if unmet:
            verdict, why = "inconclusive", f"{unmet}; the rule alone: {verdict}, {why}"
    if decision.stub:
        # Stub data says nothing about the paper at any tier: never a verdict, never a hint.
        return "not_attempted", f"{STUB_REASON}; the rule alone: {why}", why_not_judged is None
    if why_not_judged is not None:
        # No verdict at this tier: keep estimate and gap, say why it is only indicative.
        return "indicative", f"{why_not_judged}; here: {why}", False
    return verdict, why, True


def _evaluate(paper: PaperClaims, claim, groups, tier: str, why_not_judged: str | None) -> Verdict:
    rule = RULES[claim.kind]
    decision = rule.decide(claim, groups, tier)
    verdict, why, judged = in_context(decision, claim, groups, tier, why_not_judged)
    s = decision.summary
    return Verdict(
        paper=paper.slug,
        claim=claim.id,
        kind=claim.kind,
        experiment=claim.experiment,
        verdict=verdict,
        why=why,
        tier=tier,
        judged=judged,
        metric=claim.metric,
        arms=[a for a, _ in _claim_arms(claim)],
        n=s.n if s else 0,
        seeds=list(decision.seeds),
        estimate=s.mean if s else None,
        std=s.std if s else None,
        ci_low=s.ci_low if s else None,
        ci_high=s.ci_high if s else None,
        confidence=s.confidence if s else claim.stats.confidence,
        target=rule.target(claim),
        gap=decision.gap,
        rule=rule.describe(claim),
        n_needed=decision.n_needed,
        counts=decision.counts,
        stub=decision.stub,
    )


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
