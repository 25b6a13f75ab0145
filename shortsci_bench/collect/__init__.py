"""The collector: run records -> per-seed aggregates -> a verdict per claim.

    from shortsci_bench.collect import collect
    result = collect(runs=["runs"])          # plus experiments/*/results/ by default
    for claim in result.results:
        print(claim.paper, claim.claim, claim.verdict.verdict, claim.verdict.why)

Reads `result.json` files only (never loggers' files); corrupt records become warnings.
No torch, no matplotlib, no scipy: collecting ten thousand records takes about a second.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shortsci_bench.claims.schema import EXPERIMENTS_DIR, ClaimsError, PaperClaims, load_paper
from shortsci_bench.collect.records import (
    STATUSES,
    TIER_RANK,
    ArmRuns,
    GroupKey,
    LoadedRecord,
    find_record_paths,
    group_records,
    load_records,
    metric_values,
)
from shortsci_bench.collect.stats import Summary, summarize
from shortsci_bench.collect.verdicts import ClaimResult, Verdict, judge_paper, with_q_values

RUNS_ENV = "SHORTSCI_RUNS"  # the same variable conf/config.yaml reads for `runs_dir`

__all__ = [
    "Aggregate",
    "ClaimResult",
    "Collection",
    "Verdict",
    "collect",
    "default_runs",
    "load_papers",
    "published_dirs",
]


@dataclass(frozen=True)
class Aggregate:
    """One metric of one (experiment, arm, tier) over seeds (latest completed run per seed)."""

    experiment: str
    arm: str
    tier: str
    metric: str
    summary: Summary
    counts: dict[str, int]
    stub: bool

    def as_dict(self) -> dict:
        return {
            "experiment": self.experiment,
            "arm": self.arm,
            "tier": self.tier,
            "metric": self.metric,
            **self.summary.as_dict(),
            **{f"n_{s}": self.counts.get(s, 0) for s in STATUSES},
            "stub": self.stub,
        }


@dataclass
class Collection:
    """Everything the collector found: records, groups, verdicts and warnings."""

    records: list[LoadedRecord]
    groups: dict[GroupKey, ArmRuns]
    papers: list[PaperClaims]
    results: list[ClaimResult]
    warnings: list[str] = field(default_factory=list)
    confidence: float = 0.95

    def aggregates(self) -> list[Aggregate]:
        """Mean, std, n and CI of every metric per (experiment, arm, tier), sorted."""
        out = []
        for key in sorted(self.groups, key=lambda k: (k[0], k[1], TIER_RANK.get(k[2], -1))):
            group = self.groups[key]
            real = group.latest_completed(stub=False)
            by_seed = real or group.latest_completed(stub=True)
            stub = not real and group.has_stub()
            counts = group.counts()
            names = sorted({m for r in by_seed.values() for m in r.metrics})
            for metric in names:
                values = metric_values(by_seed, metric)
                if values:
                    s = summarize(values.values(), self.confidence)
                    out.append(Aggregate(*key, metric, s, counts, stub))
        return out

    def verdicts(self, include_indicative: bool = True) -> list[Verdict]:
        """All verdict rows, in claims-file order (indicative rows after their claim)."""
        if include_indicative:
            return [v for r in self.results for v in r.rows()]
        return [r.verdict for r in self.results]

    def experiments(self) -> list[str]:
        return sorted({k[0] for k in self.groups})


def published_dirs(experiments_dir: str | os.PathLike | None = None) -> list[Path]:
    """Every `experiments/*/results/` folder: the published run records."""
    root = Path(experiments_dir) if experiments_dir else EXPERIMENTS_DIR
    return sorted(p for p in root.glob("*/results") if p.is_dir())


def default_runs(experiments_dir: str | os.PathLike | None = None) -> list[Path]:
    """The runs folder ($SHORTSCI_RUNS, else `runs/` in the working folder, as the trainer
    uses) plus every published results folder."""
    return [Path(os.environ.get(RUNS_ENV) or "runs"), *published_dirs(experiments_dir)]


def load_papers(
    experiments_dir: str | os.PathLike | None = None,
) -> tuple[list[PaperClaims], list[str]]:
    """Every claims file that validates, and one warning per file that does not."""
    root = Path(experiments_dir) if experiments_dir else EXPERIMENTS_DIR
    papers, warnings = [], []
    for path in sorted(root.glob("*/claims.yaml")):
        try:
            papers.append(load_paper(path))
        except (ClaimsError, OSError) as exc:
            warnings.append(f"skipped claims file: {exc}")
    return papers, warnings


def _wanted(paper: PaperClaims, experiment: str | None) -> bool:
    if experiment is None:
        return True
    return experiment in paper.experiments or any(
        getattr(c, "experiment", None) == experiment for c in paper.claims
    )


def collect(
    runs: Sequence[str | os.PathLike] | None = None,
    experiments_dir: str | os.PathLike | None = None,
    experiment: str | None = None,
    papers: Iterable[PaperClaims] | None = None,
    strict: bool = False,
) -> Collection:
    """Read every run record under `runs`, group it and judge every claim.

    runs: folders searched recursively for `result.json` (default: `default_runs()`).
    experiments_dir: where `*/claims.yaml` live (default: the repository's experiments/).
    experiment: keep only this experiment's records and the claims that use it.
    papers: claims to judge instead of loading them from `experiments_dir`.
    strict: a verdict resting on seeds from several commits is inconclusive.
    """
    roots = list(runs) if runs is not None else default_runs(experiments_dir)
    records, warnings = load_records(find_record_paths(roots))
    if experiment is not None:
        records = [lr for lr in records if lr.record.experiment == experiment]
    if papers is None:
        papers, claim_warnings = load_papers(experiments_dir)
        warnings.extend(claim_warnings)
    papers = [p for p in papers if _wanted(p, experiment)]
    groups = group_records(records)
    results: list[ClaimResult] = []
    for paper in papers:
        for result in judge_paper(paper, groups, strict):
            if experiment is None or result.verdict.experiment in (experiment, None):
                results.append(result)
    return Collection(records, groups, papers, with_q_values(results), warnings)
