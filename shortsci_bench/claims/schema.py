"""Schema of `experiments/<paper_slug>/claims.yaml`.

Every claim rests on a verbatim quote with its seed file and line (or, marked
`source.kind: paper`, on the paper itself). Validation errors name the file,
the claim id and the field. No torch here: the collector and catalogue load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from shortsci_bench.registry import EXPERIMENTS_DIR, TIERS, Tier


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SummarySource(Strict):
    kind: Literal["summary"] = "summary"
    file: str  # a file name in shared/seeds, e.g. 001_113064d0e25c0987.txt
    line: int = Field(ge=1)


class PaperSource(Strict):
    kind: Literal["paper"]
    where: str  # e.g. "Table 1", "Section 4.1"
    evidence: str = ""  # where it was checked, e.g. "shared/docs/paper-numbers.md section 8 [P]"


def _source_kind(value: object) -> str:
    # `kind` may be left out for the common case, a quote from a seed file.
    if isinstance(value, dict):
        return value.get("kind", "summary")
    return getattr(value, "kind", "summary")


Source = Annotated[
    Annotated[SummarySource, Tag("summary")] | Annotated[PaperSource, Tag("paper")],
    Discriminator(_source_kind),
]


class Stats(Strict):
    """The seed plan, fixed before the runs. Seeds are used in order 0, 1, 2, ...; a verdict
    is taken at the largest planned look whose seeds have all finished, with that look's
    confidence (group-sequential when there are several looks), and seeds beyond the plan
    are shown but never decide. `min_seeds` alone is the plan of one look at `min_seeds`."""

    min_seeds: int = Field(default=3, ge=1)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    looks: list[int] | None = None  # e.g. [3, 5, 10]: seed counts at which to look
    boundary: Literal["none", "pocock", "obrien_fleming"] = "none"

    @model_validator(mode="after")
    def _plan(self):
        looks = self.plan()
        if any(b <= a for a, b in zip(looks, looks[1:])) or looks[0] < 2:
            raise ValueError(f"looks {looks} must increase and start at 2 or more seeds")
        if len(looks) > 1 and self.boundary == "none":
            raise ValueError(
                "several looks need a group-sequential `boundary` (pocock or obrien_fleming)"
            )
        if self.boundary != "none" and (self.confidence != 0.95 or len(looks) > 5):
            raise ValueError(
                "group-sequential boundaries are tabulated for confidence 0.95, up to 5 looks"
            )
        return self

    def plan(self) -> list[int]:
        return list(self.looks) if self.looks else [self.min_seeds]


class Side(Strict):
    """One side of an ordering: an arm's metric (the metric defaults to the claim's)."""

    arm: str
    metric: str | None = None


class Requirement(Strict):
    """A precondition for judging a claim: the arm's metric must meet `op threshold`.

    For a comparison that means something only once a model shows the mechanism under test
    (e.g. a memory network that binds labels at all). Judged like a property claim on the
    interval of the seed mean, at the claim's tier; unmet or unresolved -> `inconclusive`.
    """

    arm: str
    metric: str
    op: Literal["<", "<=", ">", ">="]
    threshold: float
    why: str  # what meeting it shows, in words the verdict can quote


class ClaimBase(Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    statement: str  # our plain restatement of what is checked
    quote: str  # verbatim from the source (stripped form for seeds 000 and 001)
    source: Source
    # not_checkable: the quote does not state a checkable outcome (or not the one an
    # experiment here measures); `reason` says why.
    status: Literal["active", "not_attempted", "not_checkable"] = "active"
    reason: str | None = None  # required unless active
    experiment: str | None = None
    metric: str | None = None
    tiers: list[Tier] = Field(default_factory=lambda: ["paper"])
    # Why the claim holds at any scale (a property of initialisation, an estimator, a
    # theorem): only then may a quick-tier run judge it. Otherwise quick is indicative.
    any_scale: str | None = None
    # Another claim of this paper that is the same test (metric, arms, direction): this one
    # cites it and is not counted again.
    same_test_as: str | None = None
    stats: Stats = Field(default_factory=Stats)
    requires: list[Requirement] = Field(default_factory=list)
    note: str | None = None

    @model_validator(mode="after")
    def _status_consistent(self):
        if self.status != "active" and not self.reason:
            raise ValueError(f"status {self.status} needs a `reason`")
        if self.status == "active" and (not self.experiment or not self.metric):
            raise ValueError("an active claim needs `experiment` and `metric`")
        if "smoke" in self.tiers:
            raise ValueError("tiers: smoke never judges a claim (it checks plumbing only)")
        if "quick" in self.tiers and not self.any_scale:
            raise ValueError(
                "tiers: quick judges only a claim that holds at any scale; say why in "
                "`any_scale`, or judge it at paper tier (quick runs are then indicative)"
            )
        return self


class ValueClaim(ClaimBase):
    """The arm's metric should equal `target` within `tolerance` (auto when null)."""

    kind: Literal["value"]
    arm: str | None = None
    target: float | None = None
    # The band: the paper's reported spread or a registered margin (`tolerance`, with its
    # reason in `note`), else the binomial noise of an evaluation of `n_eval` examples.
    tolerance: float | None = Field(default=None, ge=0)
    n_eval: int | None = Field(default=None, ge=1)  # test-set size, for binomial tolerance
    read_off_plot: bool = False  # the target was read off a figure: tolerance = reading error

    @model_validator(mode="after")
    def _needs_target(self):
        if self.status != "active":
            return self
        if self.arm is None or self.target is None:
            raise ValueError("an active value claim needs `arm` and `target`")
        if not self.tolerance and not self.n_eval:
            raise ValueError(
                "a point target can never be reproduced: give `tolerance` (the paper's spread "
                "or a margin, with its reason) or `n_eval` (binomial noise of the evaluation)"
            )
        if self.read_off_plot and not self.tolerance:
            raise ValueError("a value read off a plot needs `tolerance`, the reading error")
        return self


class OrderingClaim(ClaimBase):
    """`better` beats `worse` on the metric, paired by seed."""

    kind: Literal["ordering"]
    better: Side | None = None
    worse: Side | None = None
    higher_is_better: bool = True
    margin: float = 0.0  # the claimed minimum gap, in metric units

    @model_validator(mode="after")
    def _needs_sides(self):
        if self.status == "active" and (self.better is None or self.worse is None):
            raise ValueError("an active ordering claim needs `better` and `worse`")
        return self


class PropertyClaim(ClaimBase):
    """The arm's metric meets `op threshold` (judged on the interval of its mean)."""

    kind: Literal["property"]
    arm: str | None = None
    op: Literal["<", "<=", ">", ">="] | None = None
    threshold: float | None = None

    @model_validator(mode="after")
    def _needs_condition(self):
        if self.status == "active" and (
            self.arm is None or self.op is None or self.threshold is None
        ):
            raise ValueError("an active property claim needs `arm`, `op` and `threshold`")
        return self


Claim = Annotated[ValueClaim | OrderingClaim | PropertyClaim, Field(discriminator="kind")]


class Paper(Strict):
    title: str
    authors: list[str]
    year: int
    arxiv: str | None = None
    venue: str | None = None


class PaperClaims(Strict):
    slug: str = Field(pattern=r"^[a-z0-9_]+$")
    paper: Paper
    sources: list[SummarySource] = Field(min_length=1)
    status: Literal["active", "not_attempted"] = "active"
    reason: str | None = None
    experiments: list[str] = Field(default_factory=list)
    claims: list[Claim] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self):
        if self.status == "not_attempted":
            if not self.reason:
                raise ValueError("status not_attempted needs a `reason`")
        ids = [c.id for c in self.claims]
        dupes = {i for i in ids if ids.count(i) > 1}
        if dupes:
            raise ValueError(f"duplicate claim ids: {sorted(dupes)}")
        return self


class ClaimsError(ValueError):
    """A claims file that does not validate; the message names file, claim and field."""


def _describe(err: ValidationError, raw: dict) -> str:
    lines = []
    for e in err.errors():
        loc = list(e["loc"])
        where = ".".join(str(p) for p in loc)
        if len(loc) >= 2 and loc[0] == "claims" and isinstance(loc[1], int):
            try:
                where = (
                    f"claim {raw['claims'][loc[1]].get('id', '#' + str(loc[1]))!r}, field "
                    + ".".join(str(p) for p in loc[2:])
                )
            except (KeyError, IndexError, AttributeError, TypeError):
                pass
        lines.append(f"  {where}: {e['msg']}")
    return "\n".join(lines)


def load_paper(path: str | Path) -> PaperClaims:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ClaimsError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ClaimsError(f"{path}: expected a mapping at the top level")
    raw.setdefault("slug", path.parent.name)
    try:
        paper = PaperClaims.model_validate(raw)
    except ValidationError as exc:
        raise ClaimsError(f"{path}: invalid claims\n{_describe(exc, raw)}") from exc
    if paper.slug != path.parent.name:
        raise ClaimsError(
            f"{path}: slug {paper.slug!r} differs from its folder {path.parent.name!r}"
        )
    return paper


def load_all(experiments_dir: str | Path | None = None) -> list[PaperClaims]:
    root = Path(experiments_dir) if experiments_dir else EXPERIMENTS_DIR
    return [load_paper(p) for p in sorted(root.glob("*/claims.yaml"))]


def registry_problems(paper: PaperClaims) -> list[str]:
    """Each active claim's experiment, arms and metrics checked against the registry: one
    line per problem, naming the claim and the field (empty when all is well)."""
    from shortsci_bench import registry

    exps = registry.experiments()
    problems = []
    for name in paper.experiments:
        if name not in exps:
            problems.append(f"{paper.slug}: experiments lists {name!r}, which is not registered")
    for c in paper.claims:
        if c.status != "active":
            continue
        where = f"{paper.slug}: claim {c.id!r}"
        exp = exps.get(c.experiment or "")
        if c.experiment not in paper.experiments:
            problems.append(
                f"{where}, field experiment: {c.experiment!r} missing from `experiments`"
            )
        if exp is None:
            problems.append(f"{where}, field experiment: no experiment {c.experiment!r}")
            continue
        sides = [(c.arm, c.metric)] if hasattr(c, "arm") else []
        if isinstance(c, OrderingClaim):
            sides = [(s.arm, s.metric or c.metric) for s in (c.better, c.worse)]
        sides += [(r.arm, r.metric) for r in c.requires]
        for arm, metric in [*sides, (None, c.metric)]:
            if arm is not None and arm not in exp.arms:
                problems.append(f"{where}, field arm: {exp.name} has no arm {arm!r}")
            if metric is not None and metric not in exp.metrics:
                problems.append(f"{where}, field metric: {exp.name} declares no metric {metric!r}")
        for tier in c.tiers:
            if tier not in TIERS:
                problems.append(f"{where}, field tiers: {tier!r} is not a tier")
    return sorted(set(problems))
