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
    """Two lines a paper (slug, year, status, claims and verdicts; then the title, its
    summaries and experiments), papers with experiments first: readable at 80 columns,
    no word split (`--format json` has every field)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.padding import Padding

    console = Console()
    active = [e for e in entries if e["status"] == "active"]
    rest = [e for e in entries if e["status"] != "active"]
    console.print(
        f"[bold]{len(entries)} papers[/]: {len(active)} with experiments, {len(rest)} not attempted"
    )
    for group in (active, rest):
        console.print()
        for e in group:
            status = e["status"] if e["status"] == "active" else f"[magenta]{e['status']}[/]"
            console.print(
                f"[bold]{escape(e['slug'])}[/] ({e['year']}) {status}: {len(e['claims'])} claims, "
                f"{_tally_text(e['verdicts'])}"
            )
            where = " ".join(s["id"] for s in e["summaries"])
            exps = " ".join(e["experiments"])
            more = f"summaries {where}" + (f"; experiments {exps}" if exps else "")
            console.print(Padding(f"[dim]{escape(e['title'])} ({escape(more)})[/]", (0, 0, 0, 2)))


def print_paper(e: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.padding import Padding

    console = Console()
    console.print(f"[bold]{e['title']}[/] ({e['slug']})")
    venue = ", ".join(x for x in (e["venue"], f"arXiv {e['arxiv']}" if e["arxiv"] else None) if x)
    console.print(f"{', '.join(e['authors'])}, {e['year']}" + (f"; {venue}" if venue else ""))
    console.print(f"status: {e['status']}" + (f" ({e['reason']})" if e["reason"] else ""))
    for s in e["summaries"]:
        console.print(f"summary {s['ref']}" + (f": {s['excerpt']}" if s.get("excerpt") else ""))
    console.print(f"experiments: {', '.join(e['experiments']) or 'none'}")
    # One block per claim, not a table: it reads at any terminal width and never splits a
    # word. The first line is the verdict; then our statement, the summary's own words
    # (verbatim, with file and line) and why.
    console.print(f"\n[bold]claims[/] ({len(e['claims'])}; verdicts from published results)")
    for c in e["claims"]:
        v = c.get("verdict") or {}
        name = v.get("verdict", "")
        head = [f"[bold]{escape(c['id'])}[/]"]
        if v.get("tier"):
            head.append(escape(f"[{tier_label(v.get('tier'), v.get('stub', False))}]"))
        if name:
            head.append(f"[{VERDICT_STYLE.get(name, '')}]{name}[/]")
        estimate = interval_text(v.get("estimate"), v.get("ci_low"), v.get("ci_high"))
        if v.get("estimate") is not None:
            head.append(escape(f"{estimate} n={v.get('n') or 0}"))
        console.print("\n" + " ".join(head))
        lines = [
            escape(c["statement"]),
            f"[italic]\u201c{escape(c['quote'])}\u201d[/] ({escape(c['source_id'])})",
        ]
        if v.get("why"):
            lines.append(f"[dim]why: {escape(v['why'])}[/]")
        for line in lines:
            console.print(Padding(line, (0, 0, 0, 2)))  # wrapped lines keep the indent


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
