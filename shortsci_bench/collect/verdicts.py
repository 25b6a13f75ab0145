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
from dataclasses import asdict, dataclass, field, replace
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
from shortsci_bench.collect.stats import Summary, summarize, t_sf

VERDICTS: tuple[str, ...] = (
    "reproduced",
    "not_reproduced",
    "inconclusive",
    "not_attempted",
    "not_checkable",
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
    # One-sided p of the claimed side (an equivalence test for value claims) and the
    # Benjamini-Hochberg q over all judged tests of the collection (a shared test counted once).
    p_value: float | None = None
    q_value: float | None = None
    same_test_as: str | None = None
    data_notes: list[str] = field(default_factory=list)  # e.g. lossy copies of the data

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
    failed: frozenset[int] = frozenset()  # seeds whose latest run diverged or failed
    other: int = 0  # records left out because they ran other settings
    commits: frozenset[str] = frozenset()
    data_notes: frozenset[str] = frozenset()  # altered data the records rest on


FAILED = ("diverged", "failed")


def _arm_sample(groups: dict[GroupKey, ArmRuns], key: GroupKey, metric: str) -> _ArmSample:
    group = groups.get(key)
    if group is None:
        return _ArmSample({}, dict.fromkeys(STATUSES, 0), False, 0)
    real = group.latest_completed(stub=False)
    # Real-data runs win; stub runs are used only when nothing else exists (and then flagged).
    by_seed = real if real else group.latest_completed(stub=True)
    stub = not real and group.has_stub()
    values = metric_values(by_seed, metric)
    latest = group.latest_by_seed(stub=None if stub else False)
    failed = frozenset(seed for seed, r in latest.items() if r.status in FAILED)
    return _ArmSample(
        values,
        group.counts(),
        stub,
        len(by_seed) - len(values),
        failed,
        group.other_settings(),
        frozenset(group.commits()),
        frozenset(note for r in by_seed.values() for note in data_quality(r)),
    )


def data_quality(record) -> list[str]:
    """How the data a record trained on differs from the paper's: lossy copies, stubs."""
    data = record.provenance.data or {}
    notes = []
    if data.get("lossy"):
        notes.append(f"lossy data: {data.get('source_description') or data.get('source')}")
    if record.stub:
        notes.append("stub data")
    return notes


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
    data_notes: tuple[str, ...] = ()


# Reason code -> words. Numbers in facts are formatted by `fmt`; `{ci}` is "CI [lo, hi]".
WORDING = {
    "no_data": "no completed runs with metric {metric}{missing}",
    "unpaired": "no seed completed in both arms ({better}: {better_seeds}, {worse}: {worse_seeds})",
    "underpowered": "underpowered: seeds 0 to {last} of the first planned look have not all finished ({n} have)",
    "no_interval": "interval undefined with n={n}: one seed gives no spread",
    "failed_one": "planned seed {seeds} of {arms} diverged or failed: it counts against the claim",
    "failed_many": "planned seeds {seeds} of {arms} diverged or failed: more than one fails the claim",
    "bimodal": "{ci} would decide, but the seeds look bimodal or hold an outlier ({values}): not decided on an interval that assumes one mode",
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
    """Why the interval cannot decide yet, or None when it can (preconditions)."""
    if s.n < min_seeds:
        return "underpowered", {"n": s.n, "last": min_seeds - 1}
    if s.ci_low is None:
        return "no_interval", {"n": s.n}
    return None


# Two-sided group-sequential boundaries for an overall 95% (Jennison & Turnbull, tables 2.1
# and 2.3): Pocock's constant z at every look; O'Brien-Fleming's C, z_k = C sqrt(n_K / n_k).
POCOCK = {1: 1.960, 2: 2.178, 3: 2.289, 4: 2.361, 5: 2.413}
OBRIEN_FLEMING = {1: 1.960, 2: 1.977, 3: 2.004, 4: 2.024, 5: 2.040}
# Dixon's r10 critical values at 95% (n = 3..10): a gap this large at either end is an outlier.
DIXON_95 = {3: 0.970, 4: 0.829, 5: 0.710, 6: 0.625, 7: 0.568, 8: 0.526, 9: 0.493, 10: 0.466}


def look_confidence(stats, look: int) -> float:
    """The two-sided confidence of the interval at planned look `look` (an index)."""
    plan = stats.plan()
    if len(plan) == 1 or stats.boundary == "none":
        return stats.confidence
    k = len(plan)
    if stats.boundary == "pocock":
        z = POCOCK[k]
    else:
        z = OBRIEN_FLEMING[k] * math.sqrt(plan[-1] / plan[look])
    return math.erf(z / math.sqrt(2.0))


def outlying(values: list[float]) -> bool:
    """Dixon's test at either end: one seed far from the rest (e.g. a run that did not
    take off) makes a t-interval over seeds misleading."""
    n = len(values)
    if n < 3:
        return False
    v = sorted(values)
    spread = v[-1] - v[0]
    if spread <= 0:
        return False
    gaps = [b - a for a, b in zip(v, v[1:])]
    if min(gaps) == 0.0:
        return False  # exact ties: a quantised metric (counts over a test set), not two modes
    gap = max(gaps[0], gaps[-1])
    return gap / spread > DIXON_95.get(n, DIXON_95[10])


@dataclass(frozen=True)
class Look:
    """Which seeds decide under the claim's plan."""

    size: int | None  # the planned look used (None: the first look is not reached)
    index: int
    decided_by: tuple[int, ...]  # seeds 0..size-1 that completed
    failed: tuple[int, ...]  # planned seeds that diverged or failed
    beyond: tuple[int, ...]  # completed seeds past the look: shown, never deciding
    confidence: float


def plan_look(stats, completed: set[int], failed: set[int]) -> Look:
    """The largest planned look whose seeds 0..L-1 have all finished (completed or
    failed), in seed order; a seed that diverged or failed is finished, and counts."""
    plan = stats.plan()
    finished = completed | failed
    reached = [i for i, n in enumerate(plan) if all(s in finished for s in range(n))]
    if not reached:
        contiguous = 0
        while contiguous in finished:
            contiguous += 1
        done = tuple(s for s in range(contiguous) if s in completed and s not in failed)
        return Look(None, 0, done, (), (), stats.confidence)
    i = reached[-1]
    size = plan[i]
    return Look(
        size,
        i,
        tuple(s for s in range(size) if s in completed and s not in failed),
        tuple(s for s in range(size) if s in failed),
        tuple(sorted(s for s in completed if s >= size)),
        look_confidence(stats, i),
    )


def _plan_note(stats, look: Look, undecided: bool) -> str:
    parts = []
    if look.beyond:
        parts.append(f"seeds {list(look.beyond)} beyond the look: shown, not deciding")
    if undecided:
        plan = stats.plan()
        nxt = plan[look.index + 1] if look.index + 1 < len(plan) else None
        parts.append(
            f"next planned look: {nxt} seeds"
            if nxt
            else f"the plan's last look ({look.size} seeds)"
        )
    return "; " + "; ".join(parts) if parts else ""


def _context_note(samples: list[_ArmSample]) -> str:
    other = sum(s.other for s in samples)
    commits = set().union(*(s.commits for s in samples)) - {"None"}
    parts = []
    if other:
        parts.append(f"{other} record{'s' if other > 1 else ''} of other settings left out")
    if len(commits) > 1:
        parts.append(f"seeds from {len(commits)} commits pooled")
    return " (" + "; ".join(parts) + ")" if parts else ""


_BOUNDED = ("acc", "err", "per", "fraction")


def _clip(metric: str, s: Summary) -> Summary:
    """Accuracies, error rates and fractions live in [0, 1]: so does their interval."""
    leaf = metric.rsplit("/", 1)[-1]
    if (
        s.ci_low is None
        or not any(leaf.startswith(b) for b in _BOUNDED)
        or leaf.endswith("_mean_diff")
    ):
        return s
    return Summary(s.n, s.mean, s.std, max(0.0, s.ci_low), min(1.0, s.ci_high), s.confidence)


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
        base = {
            "counts": {claim.arm: sample.counts},
            "stub": sample.stub,
            "data_notes": tuple(sorted(sample.data_notes)),
        }
        look = plan_look(claim.stats, set(sample.values), set(sample.failed))
        values = {i: sample.values[i] for i in look.decided_by}
        return _decide_sample(self, claim, values, look, [sample], [claim.arm], base)


def _decide_sample(
    rule, claim, values: dict[int, float], look: Look, samples, arms, base
) -> Decision:
    """The decision on per-seed values (one arm's metric, or paired differences) under the
    claim's seed plan: failures count, outliers block, the look's confidence is used."""
    context = _context_note(samples)
    if look.size is None:
        facts = {"n": len(look.decided_by), "last": claim.stats.plan()[0] - 1}
        if not any(s.values for s in samples) and not any(s.failed for s in samples):
            return Decision("inconclusive", "no_data", _no_data(claim.metric, samples), **base)
        return Decision("inconclusive", "underpowered", facts, note=context, **base)
    seeds = tuple(sorted(values))
    s = summarize(values.values(), look.confidence) if values else None
    if s is not None and isinstance(rule, _OneArmRule):
        s = _clip(claim.metric, s)  # a bounded metric's mean; never a difference
    found = {
        "summary": s,
        "seeds": seeds,
        "gap": (s.mean - rule.reference(claim)) if s else None,
    }
    if look.failed:
        reason = "failed_many" if len(look.failed) > 1 else "failed_one"
        outcome = "not_reproduced" if len(look.failed) > 1 else "inconclusive"
        facts = {"seeds": list(look.failed), "arms": " or ".join(arms)}
        return Decision(outcome, reason, facts, note=context, **found, **base)
    gate = _gate(s, 2)
    if gate:
        return Decision("inconclusive", gate[0], gate[1], note=context, **found, **base)
    outcome, reason, facts = rule.judge(claim, s)
    if outcome != "inconclusive" and outlying(list(values.values())):
        shown = ", ".join(fmt(values[i]) for i in seeds)
        return Decision("inconclusive", "bimodal", {"values": shown}, note=context, **found, **base)
    note = _plan_note(claim.stats, look, outcome == "inconclusive") + context
    return Decision(outcome, reason, facts, note=note, **found, **base)


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

    def reference(self, claim) -> float:
        return claim.margin

    def judge(self, claim, s: Summary) -> tuple[str, str, dict[str, Any]]:
        margin = {"margin": claim.margin}
        if s.ci_low > claim.margin:
            return "reproduced", "d_above", margin
        if s.ci_high < claim.margin:
            return "not_reproduced", "d_below", margin
        return "inconclusive", "d_contains", {**margin, "more": ""}

    def decide(self, claim, groups, tier):
        b_metric = claim.better.metric or claim.metric
        w_metric = claim.worse.metric or claim.metric
        b = _arm_sample(groups, (claim.experiment, claim.better.arm, tier), b_metric)
        w = _arm_sample(groups, (claim.experiment, claim.worse.arm, tier), w_metric)
        base = {
            "counts": {claim.better.arm: b.counts, claim.worse.arm: w.counts},
            "stub": b.stub or w.stub,
            "data_notes": tuple(sorted(b.data_notes | w.data_notes)),
        }
        if not b.values and not b.failed or not w.values and not w.failed:
            return Decision("inconclusive", "no_data", _no_data(b_metric, [b, w]), **base)
        paired = set(b.values) & set(w.values)
        if not paired and not (b.failed or w.failed):
            facts = {
                "better": claim.better.arm,
                "better_seeds": sorted(b.values),
                "worse": claim.worse.arm,
                "worse_seeds": sorted(w.values),
            }
            return Decision("inconclusive", "unpaired", facts, **base)
        # A seed is finished for the pair when both arms finished it (a failure counts).
        done_b, done_w = set(b.values) | b.failed, set(w.values) | w.failed
        look = plan_look(claim.stats, paired, (b.failed | w.failed) & done_b & done_w)
        sign = 1.0 if claim.higher_is_better else -1.0
        diffs = {i: sign * (b.values[i] - w.values[i]) for i in look.decided_by}
        arms = [claim.better.arm, claim.worse.arm]
        return _decide_sample(self, claim, diffs, look, [b, w], arms, base)


def decide_paired(claim: OrderingClaim, diffs: dict[int, float]) -> Decision:
    """The ordering rule on given paired differences by seed (for simulations of the plan)."""
    look = plan_look(claim.stats, set(diffs), set())
    values = {i: diffs[i] for i in look.decided_by}
    sample = _ArmSample(dict(diffs), {}, False, 0)
    return _decide_sample(RULES["ordering"], claim, values, look, [sample], ["a", "b"], {})


RULES: dict[str, Rule] = {r.kind: r for r in (ValueRule(), OrderingRule(), PropertyRule())}


def _unmet_requirement(claim, groups, tier: str) -> str | None:
    """Why a precondition of the claim does not hold (or cannot be told) at `tier`; None if all hold."""
    for req in claim.requires:
        sample = _arm_sample(groups, (claim.experiment, req.arm, tier), req.metric)
        where = f"{req.arm} {req.metric} {req.op} {fmt(req.threshold)}"
        if not sample.values:
            return f"precondition untested ({where}): no completed runs with that metric"
        look = plan_look(claim.stats, set(sample.values), set(sample.failed))
        if look.size is None or look.failed:
            return f"precondition undecided ({where}): the planned seeds have not all completed"
        s = summarize([sample.values[i] for i in look.decided_by], look.confidence)
        gate = _gate(s, 2)
        if gate:
            return f"precondition undecided ({where}): {WORDING[gate[0]].format(**gate[1])}"
        side = _side(req.op, s, req.threshold)
        if side is not True:
            state = "not met" if side is False else "undecided"
            ci = f"mean {fmt(s.mean)}, CI [{fmt(s.ci_low)}, {fmt(s.ci_high)}]"
            return f"precondition {state}: {req.why} ({where}; {ci})"
    return None


def in_context(
    decision: Decision, claim, groups, tier: str, why_not_judged: str | None, strict: bool = False
) -> tuple[str, str, bool]:
    """The one place where a rule's outcome meets its context: preconditions, stub data,
    pooled code states (with `strict`) and the tier. Returns (verdict, why, judged)."""
    verdict, why = decision.outcome, render(decision)
    if strict and verdict in ("reproduced", "not_reproduced") and "commits pooled" in why:
        verdict, why = (
            "inconclusive",
            f"--strict: seeds from several commits; the rule alone: {verdict}, {why}",
        )
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


def _evaluate(
    paper: PaperClaims, claim, groups, tier: str, why_not_judged: str | None, strict: bool = False
) -> Verdict:
    rule = RULES[claim.kind]
    decision = rule.decide(claim, groups, tier)
    verdict, why, judged = in_context(decision, claim, groups, tier, why_not_judged, strict)
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
        p_value=p_value(claim, s) if s is not None else None,
        same_test_as=claim.same_test_as,
        data_notes=list(decision.data_notes),
    )


def p_value(claim, s: Summary | None) -> float | None:
    """One-sided p of the claimed side from the seed interval's t statistic: for an
    ordering, mean d > margin; for a property, the stated side of the threshold; for a
    value, the larger of the two one-sided tests that the mean lies inside the band (TOST)."""
    if s is None or s.n < 2 or s.std is None:
        return None
    se = s.std / math.sqrt(s.n)

    def side(diff: float) -> float:  # P(T > diff / se) under H0 (diff = estimate - boundary)
        if se == 0.0:
            return 0.0 if diff > 0 else 1.0
        return t_sf(diff / se, s.n - 1)

    if isinstance(claim, OrderingClaim):
        return side(s.mean - claim.margin)
    if isinstance(claim, PropertyClaim):
        return side(
            s.mean - claim.threshold if claim.op in (">", ">=") else claim.threshold - s.mean
        )
    tol = ValueRule.tolerance(claim)[0]
    return max(side(s.mean - (claim.target - tol)), side(claim.target + tol - s.mean))


def benjamini_hochberg(p_values: dict[Any, float]) -> dict[Any, float]:
    """q-values (step-up, monotone) for a family of p-values."""
    order = sorted(p_values, key=p_values.__getitem__)
    m, q, running = len(order), {}, 1.0
    for rank in range(m, 0, -1):
        key = order[rank - 1]
        running = min(running, p_values[key] * m / rank)
        q[key] = running
    return q


def with_q_values(results: list[ClaimResult]) -> list[ClaimResult]:
    """Set q-values across the judged tests of a collection; a claim that shares another's
    test (`same_test_as`) takes that test's q and is not counted again."""
    family = {
        (r.paper, r.claim): r.verdict.p_value
        for r in results
        if r.verdict.judged and r.verdict.p_value is not None and not r.verdict.same_test_as
    }
    q = benjamini_hochberg(family)
    for r in results:
        key = (r.paper, r.verdict.same_test_as or r.claim)
        if key in q:
            r.verdict = replace(r.verdict, q_value=q[key])
    return results


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


def judge_claim(
    paper: PaperClaims, claim, groups: dict[GroupKey, ArmRuns], strict: bool = False
) -> ClaimResult:
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
    if claim.status in ("not_attempted", "not_checkable"):
        result.verdict = _bare(
            paper, claim, claim.status, claim.reason or "", f"the claim is marked {claim.status}"
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
        result.verdict = _evaluate(paper, claim, groups, top, None, strict)
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


def judge_paper(
    paper: PaperClaims, groups: dict[GroupKey, ArmRuns], strict: bool = False
) -> list[ClaimResult]:
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
    return [judge_claim(paper, c, groups, strict) for c in paper.claims]
