"""The catalogue: every paper, its summaries, claims, experiments, status and latest verdicts.

    python -m shortsci_bench.catalog                  # list every paper
    python -m shortsci_bench.catalog list --format json
    python -m shortsci_bench.catalog show batch_normalization

Verdicts come from the published run records (`experiments/*/results/`) only, so the
catalogue shows what the repository backs, not what happens to sit in a local `runs/`.
No torch and no matplotlib: it answers in well under a second.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

from shortsci_bench.claims.schema import EXPERIMENTS_DIR, PaperClaims, PaperSource
from shortsci_bench.collect import collect, load_papers, published_dirs
from shortsci_bench.collect.tables import VERDICT_STYLE, interval_text, tier_label
from shortsci_bench.collect.verdicts import ClaimResult

SEED_DIRS = ("shared/seeds", "../shared/seeds")  # relative to the repository root


def _source_text(source) -> str:
    if isinstance(source, PaperSource):
        return f"paper: {source.where}"
    return f"{source.file}:{source.line}"


def short_ref(file: str, line: int) -> str:
    """'S001-13' for line 13 of 001_113064d0e25c0987.txt (the catalogue docs' naming)."""
    return f"S{file.split('_', 1)[0]}-{line:02d}"


def _seed_line(experiments_dir: Path, file: str, line: int, width: int = 160) -> str | None:
    """The start of a summary's line in the seed file, when the seeds are at hand."""
    root = experiments_dir.resolve().parent
    for rel in SEED_DIRS:
        path = root / rel / file
        if path.is_file():
            lines = path.read_text(errors="replace").splitlines()
            if 0 < line <= len(lines):
                text = lines[line - 1].strip()
                return text if len(text) <= width else text[: width - 3] + "..."
    return None


def _claim_entry(claim, result: ClaimResult | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": claim.id,
        "kind": claim.kind,
        "status": claim.status,
        "statement": claim.statement,
        "quote": claim.quote,
        "source": _source_text(claim.source),
        "source_id": (
            _source_text(claim.source)
            if isinstance(claim.source, PaperSource)
            else short_ref(claim.source.file, claim.source.line)
        ),
        "experiment": claim.experiment,
        "metric": claim.metric,
        "tiers": list(claim.tiers),
    }
    if claim.reason:
        entry["reason"] = claim.reason
    if result is not None:
        v = result.verdict
        entry["verdict"] = {
            "verdict": v.verdict,
            "why": v.why,
            "tier": v.tier,
            "n": v.n,
            "estimate": v.estimate,
            "ci_low": v.ci_low,
            "ci_high": v.ci_high,
            "target": v.target,
            "stub": v.stub,
        }
    return entry


def paper_entry(
    paper: PaperClaims,
    results: dict[str, ClaimResult],
    experiments_dir: Path,
    excerpts: bool = False,
) -> dict[str, Any]:
    """A JSON-ready description of one paper with its claims and their latest verdicts."""
    tally: dict[str, int] = {}
    claims = []
    for c in paper.claims:
        r = results.get(c.id)
        claims.append(_claim_entry(c, r))
        if r is not None:
            tally[r.verdict.verdict] = tally.get(r.verdict.verdict, 0) + 1
    summaries = []
    for s in paper.sources:
        item: dict[str, Any] = {
            "file": s.file,
            "line": s.line,
            "ref": f"{s.file}:{s.line}",
            "id": short_ref(s.file, s.line),
        }
        if excerpts:
            item["excerpt"] = _seed_line(experiments_dir, s.file, s.line)
        summaries.append(item)
    meta = paper.paper
    return {
        "slug": paper.slug,
        "title": meta.title,
        "authors": meta.authors,
        "year": meta.year,
        "venue": meta.venue,
        "arxiv": meta.arxiv,
        "status": paper.status,
        "reason": paper.reason,
        "summaries": summaries,
        "experiments": paper.experiments,
        "verdicts": tally,
        "claims": claims,
    }


def build(
    experiments_dir: str | Path | None = None, slug: str | None = None, excerpts: bool = False
) -> tuple[list[dict[str, Any]], list[str]]:
    """Catalogue entries (all papers, or the one named `slug`) and any warnings."""
    exp_dir = Path(experiments_dir) if experiments_dir else EXPERIMENTS_DIR
    papers, warnings = load_papers(exp_dir)
    if slug is not None:
        papers = [p for p in papers if p.slug == slug]
    collection = collect(published_dirs(exp_dir), exp_dir, papers=papers)
    warnings += collection.warnings
    by_paper: dict[str, dict[str, ClaimResult]] = {}
    for r in collection.results:
        by_paper.setdefault(r.paper, {})[r.claim] = r
    entries = [paper_entry(p, by_paper.get(p.slug, {}), exp_dir, excerpts) for p in papers]
    return entries, warnings


def _tally_text(tally: dict[str, int]) -> str:
    return ", ".join(
        f"[{VERDICT_STYLE[k]}]{tally[k]} {k}[/]" for k in VERDICT_STYLE if tally.get(k)
    )


def print_list(entries: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(entries)} papers")
    for col in (
        "paper",
        "title",
        "year",
        "status",
        "summaries",
        "experiments",
        "claims",
        "verdicts",
    ):
        table.add_column(col, overflow="fold")
    for e in entries:
        status = e["status"] if e["status"] == "active" else f"[magenta]{e['status']}[/]"
        table.add_row(
            e["slug"],
            e["title"],
            str(e["year"]),
            status,
            " ".join(s["id"] for s in e["summaries"]),
            " ".join(e["experiments"]),
            str(len(e["claims"])),
            _tally_text(e["verdicts"]),
        )
    Console().print(table)


def print_paper(e: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{e['title']}[/] ({e['slug']})")
    venue = ", ".join(x for x in (e["venue"], f"arXiv {e['arxiv']}" if e["arxiv"] else None) if x)
    console.print(f"{', '.join(e['authors'])}, {e['year']}" + (f"; {venue}" if venue else ""))
    console.print(f"status: {e['status']}" + (f" ({e['reason']})" if e["reason"] else ""))
    for s in e["summaries"]:
        console.print(f"summary {s['ref']}" + (f": {s['excerpt']}" if s.get("excerpt") else ""))
    console.print(f"experiments: {', '.join(e['experiments']) or 'none'}")
    table = Table(title="claims (verdicts from published results)")
    for col in ("claim", "statement", "source", "tier", "verdict", "estimate [CI]", "n", "why"):
        # Verdicts stay whole; long texts take the spare width.
        table.add_column(
            col,
            overflow="fold",
            no_wrap=col in ("verdict", "n"),
            ratio=2 if col in ("statement", "why") else None,
        )
    for c in e["claims"]:
        v = c.get("verdict") or {}
        name = v.get("verdict", "")
        table.add_row(
            c["id"],
            c["statement"],
            c["source_id"],
            tier_label(v.get("tier"), v.get("stub", False)),
            f"[{VERDICT_STYLE.get(name, '')}]{name}[/]" if name else "",
            interval_text(v.get("estimate"), v.get("ci_low"), v.get("ci_high")),
            str(v.get("n") or ""),
            v.get("why", ""),
        )
    console.print(table)


def _warn(warnings: list[str]) -> None:
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m shortsci_bench.catalog",
        description="Papers, summaries, claims, experiments and their latest verdicts.",
    )
    p.add_argument("command", nargs="?", default="list", choices=["list", "show"])
    p.add_argument("paper", nargs="?", help="paper slug (for `show`)")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--experiments-dir", type=Path, default=EXPERIMENTS_DIR, metavar="DIR")
    args = p.parse_args(argv)

    if args.command == "show":
        if not args.paper:
            p.error("`show` needs a paper slug")
        entries, warnings = build(args.experiments_dir, args.paper, excerpts=True)
        _warn(warnings)
        if not entries:
            known = [x.parent.name for x in sorted(args.experiments_dir.glob("*/claims.yaml"))]
            close = difflib.get_close_matches(args.paper, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            print(f"error: no paper {args.paper!r}{hint}", file=sys.stderr)
            return 2
    else:
        entries, warnings = build(args.experiments_dir)
        _warn(warnings)

    if args.format == "json":
        payload: Any = entries[0] if args.command == "show" else entries
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    elif args.command == "show":
        print_paper(entries[0])
    else:
        print_list(entries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
