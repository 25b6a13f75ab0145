"""The HTML report: an index of every paper and claim, and one page per experiment.

Pages are static files that open from disk (no server, no scripts, images embedded as
base64 PNG). Every number on them comes from the collected run records.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

from shortsci_bench.collect.records import TIER_RANK
from shortsci_bench.collect.tables import (
    SCALED_DOWN,
    estimate_text,
    tier_text,
    to_csv,
    to_json,
)
from shortsci_bench.collect.verdicts import VERDICTS, ClaimResult, Verdict, fmt
from shortsci_bench.report.curves import arm_curve, draw_curves, history_metrics, png_data_uri
from shortsci_bench.report.forest import draw_forest, forest_row

if TYPE_CHECKING:
    from shortsci_bench.collect import Collection

COLOURS = {
    "reproduced": "#1a7f37",
    "not_reproduced": "#cf222e",
    "inconclusive": "#bf8700",
    "not_attempted": "#8250df",
    "not_checkable": "#8250df",
    "not_run": "#6e7781",
    "indicative": "#0969da",
}

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1240px; padding: 0 12px;
       color: #1f2328; }
table { border-collapse: collapse; width: 100%; margin: 0.5em 0 1.5em; font-size: 0.85em;
        table-layout: fixed; }
th, td { border: 1px solid #d0d7de; padding: 4px 6px; vertical-align: top; text-align: left;
         overflow-wrap: break-word; }
th { background: #f6f8fa; }
tr.indicative td { color: #57606a; background: #fbfcfd; }
.badge { color: white; padding: 1px 6px; border-radius: 8px; white-space: nowrap; font-size: 0.9em; }
.scaled { color: #9a6700; font-weight: 600; }
.stub { color: #cf222e; font-weight: 600; }
.muted { color: #57606a; font-size: 0.9em; }
blockquote { margin: 4px 0 2px; padding: 0 0 0 8px; border-left: 3px solid #d0d7de;
             color: #57606a; font-style: italic; }
details > summary { cursor: pointer; color: #0969da; }
img { max-width: 100%; border: 1px solid #d0d7de; margin: 4px 0; }
.figs { display: flex; flex-wrap: wrap; gap: 4px; }
.figs img { max-width: 49%; }
code { overflow-wrap: anywhere; }
table.summary { width: auto; table-layout: auto; }
table.summary td { text-align: right; }
"""

# Column widths of the claims table: it must fit 1280 px without scrolling sideways.
CLAIM_COLS = (
    "<colgroup><col style='width:36%'><col style='width:10%'><col style='width:11%'>"
    "<col style='width:17%'><col style='width:4%'><col style='width:22%'></colgroup>"
)


def _e(text: object) -> str:
    return html.escape("" if text is None else str(text))


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>\n{body}\n</body></html>\n"
    )


def _badge(verdict: str) -> str:
    colour = COLOURS.get(verdict, "#6e7781")
    return f"<span class='badge' style='background:{colour}'>{_e(verdict)}</span>"


def _tier_cell(v: Verdict) -> str:
    if v.tier is None:
        return ""
    cls = "stub" if v.stub else ("scaled" if v.tier in SCALED_DOWN else "")
    return f"<span class='{cls}'>{_e(tier_text(v))}</span>" if cls else _e(tier_text(v))


def _page_name(experiment: str) -> str:
    return f"experiment-{experiment}.html"


def _claim_index(collection: Collection) -> dict[tuple[str, str], object]:
    """(paper slug, claim id) -> the claim as registered (for its quote and source)."""
    return {(p.slug, c.id): c for p in collection.papers for c in p.claims}


def _quote_html(claim) -> str:
    if claim is None:
        return ""
    src = claim.source
    where = (
        f"{src.file}:{src.line}" if src.kind == "summary" else f"paper, {src.where} {src.evidence}"
    )
    return f"<blockquote>&ldquo;{_e(claim.quote)}&rdquo;</blockquote><span class='muted'>{_e(where)}</span>"


def _verdict_rows(
    result: ClaimResult, pages: set[str] = frozenset(), claim: object | None = None
) -> str:
    """Table rows of a claim's verdict and its indicative rows; `pages` = experiments with a page.

    The first cell holds the claim: id, our statement, the verbatim quote and its source;
    the rule and the run counts are folded so the table fits the page."""
    rows = []
    for i, v in enumerate(result.rows()):
        cls = "" if v.judged else " class='indicative'"
        exp = v.experiment or ""
        if exp in pages:
            exp = f"<a href='{_e(_page_name(exp))}'>{_e(exp)}</a>"
        if i == 0:  # the claim's own row (its verdict may itself be only indicative)
            first = (
                f"<b>{_e(v.claim)}</b> <span class='muted'>({_e(v.kind)}; {exp or 'no experiment'})"
                f"</span><br>{_e(result.statement)}{_quote_html(claim)}"
            )
        else:
            first = f"&#8627; {_e(v.claim)} <span class='muted'>(indicative)</span>"
        estimate = _e(estimate_text(v))
        if v.target:
            estimate += f"<br><span class='muted'>target {_e(v.target)}</span>"
        if v.gap is not None:
            estimate += f"<br><span class='muted'>gap {_e(fmt(v.gap))}</span>"
        folded = ""
        if v.rule or v.counts_text:
            folded = (
                f"<details><summary>rule, runs</summary><span class='muted'>{_e(v.rule)}"
                f"<br>runs: {_e(v.counts_text)}</span></details>"
            )
        rows.append(
            f"<tr{cls}><td>{first}</td><td>{_tier_cell(v)}</td>"
            f"<td>{_badge(v.verdict)}</td><td>{estimate}</td>"
            f"<td>{v.n or ''}</td><td>{_e(v.why)}{folded}</td></tr>"
        )
    return "\n".join(rows)


CLAIM_HEAD = (
    CLAIM_COLS + "<tr><th>claim: statement, quote, source</th><th>tier</th><th>verdict</th>"
    "<th>estimate [CI]</th><th>n</th><th>why</th></tr>"
)

# The verdicts a paper is listed under "findings" for: something was run and judged.
RAN = ("reproduced", "not_reproduced", "inconclusive", "indicative")


def _summary_table(collection: Collection) -> str:
    """Claims counted by verdict (rows) and the tier that verdict is at (columns)."""
    counts: dict[tuple[str, str], int] = {}
    tiers: set[str] = set()
    for r in collection.results:
        tier = r.verdict.tier or "none"
        tiers.add(tier)
        counts[(r.verdict.verdict, tier)] = counts.get((r.verdict.verdict, tier), 0) + 1
    order = sorted(tiers - {"none"}, key=lambda t: -TIER_RANK.get(t, -1)) + (
        ["none"] if "none" in tiers else []
    )
    head = "".join(f"<th>{_e(t)}</th>" for t in order)
    body = []
    for verdict in VERDICTS:
        row = [counts.get((verdict, t), 0) for t in order]
        if sum(row):
            cells = "".join(f"<td>{n or ''}</td>" for n in row)
            body.append(f"<tr><th>{_badge(verdict)}</th>{cells}<td><b>{sum(row)}</b></td></tr>")
    return (
        f"<table class='summary'><tr><th>verdict \\ tier</th>{head}<th>all</th></tr>"
        + "".join(body)
        + "</table>"
    )


def _forest_html(collection: Collection, claims: dict) -> str:
    rows = [
        row
        for r in collection.results
        if (row := forest_row(r, claims.get((r.paper, r.claim)))) is not None
    ]
    if not rows:
        return "<p class='muted'>No judged claim has an interval over seeds yet.</p>"
    png = draw_forest(rows, COLOURS)
    return (
        f"<img alt='forest plot of {len(rows)} judged claims' src='{png_data_uri(png)}'>"
        "<p class='muted'>Each judged claim's estimate and interval in units of its seed "
        "standard deviation, measured from its decision boundary (target, margin or "
        "threshold), with the claimed side to the right; green is where the whole interval "
        "must lie for <i>reproduced</i>. The verdicts come from the rules, not the picture.</p>"
    )


def _paper_section(paper, results: list[ClaimResult], pages: set[str], claims: dict) -> str:
    meta = paper.paper
    status = (
        "" if paper.status == "active" else f" &mdash; {_badge('not_attempted')} {_e(paper.reason)}"
    )
    sources = ", ".join(f"{s.file}:{s.line}" for s in paper.sources)
    tally = _tally_html(results)
    parts = [
        f"<h3 id='{_e(paper.slug)}'>{_e(meta.title)}</h3>"
        f"<p class='muted'>{_e(', '.join(meta.authors))} ({meta.year}){status}<br>"
        f"slug <code>{_e(paper.slug)}</code>; summaries {_e(sources)}; experiments "
        f"{_e(', '.join(paper.experiments) or 'none')}; {tally}</p>"
    ]
    if results:
        body = "\n".join(_verdict_rows(r, pages, claims.get((r.paper, r.claim))) for r in results)
        parts.append(f"<table>{CLAIM_HEAD}\n{body}</table>")
    return "\n".join(parts)


def _tally_html(results: list[ClaimResult]) -> str:
    tally = {k: 0 for k in VERDICTS}
    for r in results:
        tally[r.verdict.verdict] += 1
    return " ".join(f"{_badge(k)} {n}" for k, n in tally.items() if n) or "no claims"


def index_html(collection: Collection) -> str:
    """The index page: findings first (counts by verdict and tier, a forest plot of the
    judged claims), then the papers with verdicts, then the papers not yet run (folded)."""
    runs = sum(len(g.runs) for g in collection.groups.values())  # copies counted once
    claims = _claim_index(collection)
    parts = [
        "<h1>shortsci_bench: claims and verdicts</h1>",
        f"<p>{len(collection.results)} claims from {runs} distinct run records "
        f"(a published copy of a local run counts once). {_tally_html(collection.results)}</p>",
        "<h2>Summary</h2>",
        _summary_table(collection),
        _forest_html(collection, claims),
        "<p class='muted'>Verdicts rest on a Student-t interval of the mean over seeds "
        "(paired by seed for orderings). Tiers <span class='scaled'>smoke</span> and "
        "<span class='scaled'>quick</span> are scaled-down versions of the paper's setting; "
        "<span class='stub'>stub data</span> runs are trained on stand-in data and never "
        "count as reproductions. Indicative rows (&#8627;) show other tiers' estimates "
        "without a verdict. Data: <a href='claims.csv'>claims.csv</a>, "
        "<a href='claims.json'>claims.json</a>.</p>",
    ]
    if collection.warnings:
        items = "".join(f"<li>{_e(w)}</li>" for w in collection.warnings)
        parts.append(
            f"<details><summary>{len(collection.warnings)} warnings</summary><ul>{items}</ul></details>"
        )
    exps = collection.experiments()
    pages = set(exps)
    if exps:
        links = ", ".join(f"<a href='{_e(_page_name(x))}'>{_e(x)}</a>" for x in exps)
        parts.append(f"<p>Experiment pages (curves, aggregates): {links}</p>")
    by_paper: dict[str, list[ClaimResult]] = {}
    for r in collection.results:
        by_paper.setdefault(r.paper, []).append(r)

    def ran(paper) -> int:
        return sum(r.verdict.verdict in RAN for r in by_paper.get(paper.slug, []))

    def decided(paper) -> int:
        return sum(r.verdict.verdict in RAN[:3] for r in by_paper.get(paper.slug, []))

    # Papers with judged verdicts first, then those with only indicative estimates.
    with_findings = sorted(
        (p for p in collection.papers if ran(p)), key=lambda p: (-decided(p), -ran(p), p.slug)
    )
    rest = [p for p in collection.papers if not ran(p)]
    parts.append(f"<h2>Papers with verdicts ({len(with_findings)})</h2>")
    parts.extend(_paper_section(p, by_paper.get(p.slug, []), pages, claims) for p in with_findings)
    if rest:
        parts.append(f"<h2>Papers not run yet ({len(rest)})</h2>")
        items = "".join(
            f"<li><a href='#{_e(p.slug)}'>{_e(p.paper.title)}</a> "
            f"<span class='muted'>({len(p.claims)} claims; {_e(p.reason or 'no runs yet')})"
            "</span></li>"
            for p in rest
        )
        sections = "\n".join(
            _paper_section(p, by_paper.get(p.slug, []), pages, claims) for p in rest
        )
        parts.append(
            f"<ul>{items}</ul><details><summary>their claims ({sum(len(p.claims) for p in rest)})"
            f"</summary>{sections}</details>"
        )
    return _page("shortsci_bench report", "\n".join(parts))


def _aggregate_table(collection: Collection, experiment: str) -> str:
    rows = []
    for a in collection.aggregates():
        if a.experiment != experiment:
            continue
        s = a.summary
        tier = _e(a.tier)
        if a.stub:
            tier = f"<span class='stub'>{tier} (stub data)</span>"
        elif a.tier in SCALED_DOWN:
            tier = f"<span class='scaled'>{tier} (scaled down)</span>"
        ci = f"[{fmt(s.ci_low)}, {fmt(s.ci_high)}]" if s.ci_low is not None else "n/a"
        counts = ", ".join(f"{n} {k}" for k, n in a.counts.items() if n)
        rows.append(
            f"<tr><td>{_e(a.arm)}</td><td>{tier}</td><td>{_e(a.metric)}</td>"
            f"<td>{fmt(s.mean)}</td><td>{fmt(s.std)}</td><td>{ci}</td><td>{s.n}</td>"
            f"<td class='muted'>{_e(counts)}</td></tr>"
        )
    head = (
        "<tr><th>arm</th><th>tier</th><th>metric</th><th>mean</th><th>std</th>"
        "<th>95% CI</th><th>n</th><th>runs</th></tr>"
    )
    return f"<table>{head}\n{''.join(rows)}</table>" if rows else "<p>No completed runs.</p>"


def _tiers_run(collection: Collection, experiment: str) -> list[str]:
    """The tiers with records of `experiment`, highest first."""
    tiers = {k[2] for k in collection.groups if k[0] == experiment}
    return sorted(tiers, key=TIER_RANK.__getitem__, reverse=True)


def _figures(collection: Collection, experiment: str) -> str:
    parts = []
    tiers = _tiers_run(collection, experiment)
    for tier in tiers:
        arms = sorted(k[1] for k in collection.groups if k[0] == experiment and k[2] == tier)
        per_arm = {}
        stub = False
        for arm in arms:
            group = collection.groups[(experiment, arm, tier)]
            real = group.latest_completed(stub=False)
            records = list((real or group.latest_completed(stub=True)).values())
            stub = stub or (not real and group.has_stub())
            if records:
                per_arm[arm] = records
        metrics = history_metrics(r for rs in per_arm.values() for r in rs)
        label = (
            tier
            + (" (scaled down)" if tier in SCALED_DOWN else "")
            + (" STUB DATA" if stub else "")
        )
        cls = "stub" if stub else ("scaled" if tier in SCALED_DOWN else "")
        parts.append(f"<h3>Tier <span class='{cls}'>{_e(label)}</span></h3>")
        if not metrics:
            parts.append("<p>No history recorded.</p>")
            continue
        imgs = []
        for metric in metrics:
            curves = [c for arm, rs in per_arm.items() if (c := arm_curve(arm, rs, metric))]
            if not curves:
                continue
            title = f"{experiment}: {metric}\ntier {label}"
            png = draw_curves(curves, title, metric)
            imgs.append(
                f"<img alt='{_e(metric)} learning curves, tier {_e(label)}' src='{png_data_uri(png)}'>"
            )
        parts.append(f"<div class='figs'>{''.join(imgs)}</div>")
    return "\n".join(parts)


def _run_notes(collection: Collection, experiment: str) -> str:
    """The notes the records carry (tier reductions, lossy or stub data), per tier, once each."""
    items = []
    tiers = _tiers_run(collection, experiment)
    for tier in tiers:
        notes: dict[str, list[str]] = {}
        for key, group in sorted(collection.groups.items()):
            if key[0] != experiment or key[2] != tier:
                continue
            for record in group.latest_completed().values():
                for note in record.notes:
                    arms = notes.setdefault(note, [])
                    if key[1] not in arms:
                        arms.append(key[1])
        for note, arms in notes.items():
            cls = " class='stub'" if "stub" in note.lower() or "lossy" in note.lower() else ""
            items.append(
                f"<li><b>{_e(tier)}</b> ({_e(', '.join(arms))}): <span{cls}>{_e(note)}</span></li>"
            )
    return f"<ul>{''.join(items)}</ul>" if items else "<p>The records carry no notes.</p>"


def experiment_html(collection: Collection, experiment: str) -> str:
    """One experiment: its claims, aggregates per arm and tier, and learning curves."""
    papers = [p for p in collection.papers if experiment in p.experiments]
    paper_links = ", ".join(
        f"<a href='index.html#{_e(p.slug)}'>{_e(p.paper.title)}</a>" for p in papers
    )
    results = [r for r in collection.results if r.verdict.experiment == experiment]
    claims = _claim_index(collection)
    parts = [
        "<p><a href='index.html'>&larr; all claims</a></p>",
        f"<h1>Experiment <code>{_e(experiment)}</code></h1>",
        f"<p>Papers: {paper_links or 'none listed'}</p>",
        "<h2>Claims</h2>",
        f"<table>{CLAIM_HEAD}\n"
        f"{''.join(_verdict_rows(r, claim=claims.get((r.paper, r.claim))) for r in results)}</table>"
        if results
        else "<p>No claims use this experiment.</p>",
        "<h2>What these runs are</h2>",
        "<p class='muted'>Notes from the run records: how each tier departs from the paper, "
        "and which data was used where it is not the original.</p>",
        _run_notes(collection, experiment),
        "<h2>Final metrics over seeds</h2>",
        _aggregate_table(collection, experiment),
        "<h2>Learning curves</h2>",
        "<p class='muted'>From each run record's <code>history</code>: per arm, the mean over "
        "seeds (line) and the band from the lowest to the highest seed (shaded); x is the "
        "training step. n = seeds with that metric.</p>",
        _figures(collection, experiment),
    ]
    return _page(f"{experiment}: shortsci_bench", "\n".join(parts))


def write_report(collection: Collection, out_dir: str | Path) -> Path:
    """Write index.html, one page per experiment, claims.csv and claims.json; return index."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "claims.csv").write_text(to_csv(collection))
    (out / "claims.json").write_text(to_json(collection))
    for experiment in collection.experiments():
        (out / _page_name(experiment)).write_text(experiment_html(collection, experiment))
    index = out / "index.html"
    index.write_text(index_html(collection))
    return index


__all__ = ["experiment_html", "index_html", "write_report"]
