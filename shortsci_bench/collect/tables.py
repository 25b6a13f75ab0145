"""Verdict tables in four shapes: a rich console table, JSON, CSV and Markdown.

Every number comes from the collected run records; nothing here computes statistics.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import TYPE_CHECKING

from shortsci_bench.collect.verdicts import Verdict, fmt

if TYPE_CHECKING:
    from shortsci_bench.collect import Collection

VERDICT_STYLE = {
    "reproduced": "bold green",
    "not_reproduced": "bold red",
    "inconclusive": "yellow",
    "not_attempted": "magenta",
    "not_checkable": "magenta",
    "not_run": "dim",
    "indicative": "cyan",
}
SCALED_DOWN = {"smoke", "quick"}  # tiers that run a scaled-down version of the paper's setting

CSV_COLUMNS = [
    "paper",
    "claim",
    "kind",
    "experiment",
    "tier",
    "judged",
    "verdict",
    "why",
    "metric",
    "arms",
    "n",
    "seeds",
    "estimate",
    "std",
    "ci_low",
    "ci_high",
    "confidence",
    "target",
    "gap",
    "n_needed",
    "rule",
    "counts",
    "stub",
]


def interval_text(estimate: float | None, ci_low: float | None, ci_high: float | None) -> str:
    """'0.9312 [0.9287, 0.9337]', or '0.9312 [n/a]' when the interval is undefined."""
    if estimate is None:
        return ""
    if ci_low is None:
        return f"{fmt(estimate)} [n/a]"
    return f"{fmt(estimate)} [{fmt(ci_low)}, {fmt(ci_high)}]"


def tier_label(tier: str | None, stub: bool = False) -> str:
    """'quick (scaled down)', 'paper (stub data)', 'paper'."""
    if tier is None:
        return ""
    labels = []
    if tier in SCALED_DOWN:
        labels.append("scaled down")
    if stub:
        labels.append("stub data")
    return f"{tier} ({', '.join(labels)})" if labels else tier


def estimate_text(v: Verdict) -> str:
    text = interval_text(v.estimate, v.ci_low, v.ci_high)
    return f"{text} q={fmt(v.q_value)}" if v.q_value is not None else text


def tier_text(v: Verdict) -> str:
    label = tier_label(v.tier, v.stub)
    if any(n.startswith("lossy data") for n in v.data_notes):
        label += " (lossy data)"
    return label


def verdict_row(v: Verdict) -> dict[str, object]:
    """One flat row (CSV column order) of a verdict."""
    d = v.as_dict()
    d["arms"] = " ".join(v.arms)
    d["seeds"] = " ".join(str(s) for s in v.seeds)
    d["counts"] = v.counts_text
    return {k: d[k] for k in CSV_COLUMNS}


def to_json(collection: Collection) -> str:
    """`claims.json`: verdicts with evidence, per-arm aggregates and skipped files."""
    payload = {
        "records": len(collection.records),
        "warnings": collection.warnings,
        "claims": [r.as_dict() for r in collection.results],
        "aggregates": [a.as_dict() for a in collection.aggregates()],
    }
    return json.dumps(_finite(payload), indent=2, allow_nan=False, default=str) + "\n"


def _finite(obj: object) -> object:
    """NaN and infinities become null: strict JSON has no spelling for them."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def to_csv(collection: Collection) -> str:
    """`claims.csv`: one row per verdict, indicative rows included (column `judged`)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for v in collection.verdicts():
        writer.writerow(verdict_row(v))
    return buf.getvalue()


def to_markdown(collection: Collection) -> str:
    """A compact Markdown table of the judged verdicts (for the README)."""
    lines = [
        "| paper | claim | tier | verdict | estimate [CI] | n | why |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in collection.results:
        v = r.verdict
        why = v.why.replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {v.paper} | {v.claim} | {tier_text(v)} | {v.verdict} | {estimate_text(v)} "
            f"| {v.n or ''} | {why} |"
        )
    return "\n".join(lines) + "\n"


HIDDEN_BY_DEFAULT = ("not_attempted", "not_checkable")


def compact_lines(
    collection: Collection,
    width: int = 100,
    papers: set[str] | None = None,
    verdicts: set[str] | None = None,
    tiers: set[str] | None = None,
    show_all: bool = False,
) -> list[str]:
    """One line per claim, grouped under its paper: claim, tier, verdict, estimate [CI].
    Lines never wrap: a long claim id is shortened with '~'. Claims that were not
    attempted or cannot be checked are counted, not listed, unless asked for."""
    rows, hidden = [], {}
    for r in collection.results:
        v = r.verdict
        if papers and v.paper not in papers or tiers and (v.tier or "-") not in tiers:
            continue
        if verdicts and v.verdict not in verdicts:
            continue
        if not (show_all or verdicts) and v.verdict in HIDDEN_BY_DEFAULT:
            hidden[v.verdict] = hidden.get(v.verdict, 0) + 1
            continue
        rows.append(v)

    def short_tier(v: Verdict) -> str:
        marks = ("/stub" if v.stub else "") + (
            "/lossy" if any(n.startswith("lossy") for n in v.data_notes) else ""
        )
        return (v.tier or "-") + marks

    def short_est(v: Verdict) -> str:
        if v.estimate is None:
            return ""
        if v.ci_low is None:
            return f"{v.estimate:.3g}"
        return f"{v.estimate:.3g} [{v.ci_low:.3g}, {v.ci_high:.3g}]"

    est_w = max([len(short_est(v)) for v in rows] + [8])
    tier_w = max([len(short_tier(v)) for v in rows] + [4])
    fixed = 2 + tier_w + 2 + 14 + 2 + est_w
    claim_w = max(12, min(48, width - fixed - 2))
    out, paper = [], None
    for v in rows:
        if v.paper != paper:
            paper = v.paper
            out.append(paper)
        claim = v.claim if len(v.claim) <= claim_w else v.claim[: claim_w - 1] + "~"
        line = f"  {claim:<{claim_w}}  {short_tier(v):<{tier_w}}  {v.verdict:<14}  {short_est(v)}"
        out.append(line.rstrip())
    tally: dict[str, int] = {}
    for v in rows:
        tally[v.verdict] = tally.get(v.verdict, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(tally.items()))
    out.append(f"{len(rows)} claims shown: {summary or 'none'}")
    if hidden:
        words = ", ".join(f"{n} {k}" for k, n in sorted(hidden.items()))
        out.append(f"hidden: {words} (--all lists them; --full: reasons)")
    return out


def print_table(collection: Collection, console=None, show_indicative: bool = True) -> None:
    """Print the verdict table with rich: one row per verdict, indicative rows marked ↳.

    `rule` is the short form (kind: what the estimate must satisfy); the full rule in
    words is in claims.json, claims.csv and the HTML report.
    """
    from rich.console import Console
    from rich.table import Table

    if console is None:
        # Logs and pipes get rich's 80 columns by default, too narrow for eight columns.
        console = Console() if Console().is_terminal else Console(width=180)
    runs = sum(len(g.runs) for g in collection.groups.values())
    table = Table(title=f"Claims ({runs} run records)", show_lines=False)
    for name in ("paper", "claim", "tier", "verdict", "estimate [CI]", "n", "rule", "why"):
        # Verdicts stay whole; the explanation takes the spare width.
        table.add_column(
            name,
            overflow="fold",
            no_wrap=name in ("verdict", "n"),
            ratio=3 if name == "why" else None,
        )
    for v in collection.verdicts(include_indicative=show_indicative):
        style = VERDICT_STYLE.get(v.verdict, "")
        claim = v.claim if v.judged else f"  ↳ {v.claim}"
        table.add_row(
            v.paper,
            claim,
            tier_text(v),
            f"[{style}]{v.verdict}[/]",
            estimate_text(v),
            str(v.n) if v.n else "",
            f"{v.kind}: {v.target}" if v.target else v.kind,
            v.why,
        )
    console.print(table)
    tally: dict[str, int] = {}
    for r in collection.results:
        tally[r.verdict.verdict] = tally.get(r.verdict.verdict, 0) + 1
    summary = ", ".join(
        f"[{VERDICT_STYLE[k]}]{tally[k]} {k}[/]" for k in VERDICT_STYLE if tally.get(k)
    )
    console.print(f"{len(collection.results)} claims: {summary}")
