"""Checks on the claims data in `experiments/*/claims.yaml`.

- every file validates against `shortsci_bench.claims.schema` (errors name file, claim, field);
- every quote taken from a summary is verbatim in the cited line of the seed file
  (seeds 000 and 001 are in their stripped form: no '-' and no '|');
- every summary line of every seed file is cited by exactly one paper's `sources`;
- active claims name registered experiments, arms and metrics (tests/test_registry.py);
- numbers in value claims come from their quote (or the note that explains the reading).

The seed files live outside the repository: `$SHORTSCI_SEEDS`, else `<repo>/../shared/seeds`.
Tests that need them skip when the folder is absent.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from shortsci_bench.claims.schema import (
    ClaimsError,
    PaperClaims,
    ValueClaim,
    load_all,
    load_paper,
)

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"


# --------------------------------------------------------------------------- seeds


def seeds_dir() -> Path:
    env = os.environ.get("SHORTSCI_SEEDS")
    return Path(env) if env else REPO.parent / "shared" / "seeds"


SEEDS = seeds_dir()
SEED_FILES = sorted(p.name for p in SEEDS.glob("*.txt")) if SEEDS.is_dir() else []
needs_seeds = pytest.mark.skipif(
    not SEED_FILES, reason=f"seed folder {SEEDS} is absent or empty (set SHORTSCI_SEEDS)"
)

_COMMENTS = re.compile(r"\d+ Comments?")


def is_summary_line(line: str) -> bool:
    """A summary is one long line; the rest are separators. Seeds 002/003 keep a trailing '|'
    on some separators ("Welcome to ShortScience.org! |", a lone "|"); 000/001 have them stripped."""
    text = line.strip().rstrip("|").strip()
    return not (
        text == ""
        or text == "Welcome to ShortScience.org!"
        or text == "[link]"
        or _COMMENTS.fullmatch(text) is not None
    )


_LINES: dict[str, list[str]] = {}


def seed_lines(name: str) -> list[str]:
    """Lines of a seed file, split on '\\n' only (as `sed -n Np` counts them)."""
    if name not in _LINES:
        _LINES[name] = (SEEDS / name).read_text(encoding="utf-8").split("\n")
    return _LINES[name]


def summary_line_numbers(name: str) -> list[int]:
    return [i for i, line in enumerate(seed_lines(name), start=1) if is_summary_line(line)]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def papers() -> list[PaperClaims]:
    loaded = load_all(EXPERIMENTS)  # a ClaimsError here names the file, claim and field
    assert loaded, f"no experiments/*/claims.yaml found under {EXPERIMENTS}"
    return loaded


def _report(problems: list[str], header: str = "") -> None:
    """Fail with one line per problem, without pytest's traceback and fixture reprs."""
    if problems:
        pytest.fail((header + "\n" if header else "") + "\n".join(problems), pytrace=False)


def _where(paper: PaperClaims, claim=None) -> str:
    return f"experiments/{paper.slug}/claims.yaml" + (f" claim {claim.id!r}" if claim else "")


# --------------------------------------------------------------------------- schema


def test_all_claims_files_load(papers):
    slugs = [p.slug for p in papers]
    assert len(slugs) == len(set(slugs))


def test_not_attempted_papers_have_no_active_claims(papers):
    bad = [
        _where(p, c)
        for p in papers
        if p.status == "not_attempted"
        for c in p.claims
        if c.status == "active"
    ]
    _report(bad, "active claims in a not_attempted paper:")


# --------------------------------------------------------------------------- quotes and sources


@needs_seeds
def test_sources_point_at_summary_lines(papers):
    problems = []
    for p in papers:
        cited = [("sources", s) for s in p.sources] + [
            (f"claim {c.id!r}", c.source) for c in p.claims if c.source.kind == "summary"
        ]
        for what, s in cited:
            if s.file not in SEED_FILES:
                problems.append(f"{_where(p)} {what}: no seed file {s.file!r} in {SEEDS}")
                continue
            lines = seed_lines(s.file)
            if s.line > len(lines):
                problems.append(
                    f"{_where(p)} {what}: {s.file} has {len(lines)} lines, not {s.line}"
                )
            elif not is_summary_line(lines[s.line - 1]):
                problems.append(
                    f"{_where(p)} {what}: {s.file}:{s.line} is a separator line "
                    f"({lines[s.line - 1].strip()!r}), not a summary"
                )
    _report(problems)


def test_claim_sources_are_among_paper_sources(papers):
    problems = []
    for p in papers:
        listed = {(s.file, s.line) for s in p.sources}
        for c in p.claims:
            if c.source.kind == "summary" and (c.source.file, c.source.line) not in listed:
                problems.append(
                    f"{_where(p, c)} cites {c.source.file}:{c.source.line}, "
                    f"which is not in the paper's `sources`"
                )
    _report(problems)


@needs_seeds
def test_summary_quotes_are_verbatim(papers):
    problems = []
    for p in papers:
        for c in p.claims:
            s = c.source
            if s.kind != "summary" or s.file not in SEED_FILES:
                continue  # unknown files are reported by test_sources_point_at_summary_lines
            lines = seed_lines(s.file)
            if s.line > len(lines):
                continue
            if not c.quote.strip():
                problems.append(f"{_where(p, c)}: empty quote")
            elif c.quote not in lines[s.line - 1]:
                problems.append(
                    f"{_where(p, c)}: quote not found verbatim in {s.file}:{s.line}\n"
                    f"    quote: {c.quote!r}"
                )
    _report(problems)


def test_paper_sourced_claims_rest_on_checked_numbers(papers):
    """Numbers from the paper itself must come from a [P] or [S] entry of paper-numbers.md."""
    problems = []
    for p in papers:
        for c in p.claims:
            if c.source.kind != "paper":
                continue
            ev = c.source.evidence
            if "[U]" in ev or not ("[P]" in ev or "[S]" in ev):
                problems.append(f"{_where(p, c)}: evidence {ev!r} is not marked [P] or [S]")
            if not c.quote.strip():
                problems.append(f"{_where(p, c)}: empty quote")
    _report(problems)


def _renderings(x: float) -> set[str]:
    return {f"{x:g}", f"{round(x * 100, 6):g}"}


def test_value_targets_come_from_the_quote(papers):
    """A target (0.938) must appear in its quote or note, as written (0.938) or as a percent (93.8)."""
    problems = []
    for p in papers:
        for c in p.claims:
            if isinstance(c, ValueClaim) and c.target is not None:
                text = c.quote + " " + (c.note or "")
                if not any(r in text for r in _renderings(c.target)):
                    problems.append(f"{_where(p, c)}: target {c.target} not found in quote or note")
    _report(problems)


@pytest.mark.parametrize("seed_file", SEED_FILES or ["<no seed files>"])
def test_every_summary_line_is_cited(papers, seed_file):
    """Every summary line belongs to exactly one paper folder. Fails, listing the lines, until
    every seed file has been catalogued."""
    if not SEED_FILES:
        pytest.skip(f"seed folder {SEEDS} is absent or empty (set SHORTSCI_SEEDS)")
    cited = {s.line for p in papers for s in p.sources if s.file == seed_file}
    missing = [n for n in summary_line_numbers(seed_file) if n not in cited]
    _report(
        [f"    line {n}: {seed_lines(seed_file)[n - 1][:90]!r}..." for n in missing],
        f"{len(missing)} summary line(s) of {seed_file} are cited by no experiments/*/claims.yaml "
        f"`sources`:",
    )


def test_no_summary_line_in_two_papers(papers):
    owners: dict[tuple[str, int], list[str]] = {}
    for p in papers:
        for s in p.sources:
            owners.setdefault((s.file, s.line), []).append(p.slug)
    shared = {k: v for k, v in owners.items() if len(v) > 1}
    _report(
        [f"    {f}:{n}: {', '.join(v)}" for (f, n), v in sorted(shared.items())],
        "summary lines listed by more than one paper:",
    )


# --------------------------------------------------------------------------- experiments, arms, metrics


def test_active_values_are_fractions_judged_at_paper_tier(papers):
    problems = []
    for p in papers:
        for c in p.claims:
            if c.status != "active":
                continue
            if "paper" not in c.tiers:
                problems.append(f"{_where(p, c)}: tiers {c.tiers} leave out 'paper'")
            if isinstance(c, ValueClaim):
                if c.tiers != ["paper"]:
                    problems.append(
                        f"{_where(p, c)}: an absolute value is judged at paper tier only"
                    )
                leaf = c.metric.rsplit("/", 1)[-1]
                if leaf.startswith(("acc", "err", "per")) and not 0.0 <= c.target <= 1.0:
                    problems.append(
                        f"{_where(p, c)}: {c.metric} target {c.target} is not a fraction"
                    )
    _report(problems)


# --------------------------------------------------------------------------- error messages

_BROKEN = {
    "missing_quote": (
        """
  - id: broken_claim
    statement: "x"
    source: {kind: summary, file: 000_52fbb3ecf381a3cb.txt, line: 2}
    kind: ordering
    experiment: batchnorm_mnist
    metric: test/acc
    better: {arm: bn}
    worse: {arm: plain}
""",
        "quote",
    ),
    "bad_tier": (
        """
  - id: broken_claim
    statement: "x"
    quote: "y"
    source: {kind: summary, file: 000_52fbb3ecf381a3cb.txt, line: 2}
    kind: value
    experiment: batchnorm_mnist
    metric: test/acc
    arm: bn
    target: 0.9
    tiers: [weekly]
""",
        "tiers",
    ),
    "not_attempted_without_reason": (
        """
  - id: broken_claim
    statement: "x"
    quote: "y"
    source: {kind: summary, file: 000_52fbb3ecf381a3cb.txt, line: 2}
    kind: property
    status: not_attempted
""",
        "reason",
    ),
}


@pytest.mark.parametrize("case", sorted(_BROKEN))
def test_broken_claims_file_names_file_claim_and_field(tmp_path, case):
    body, field = _BROKEN[case]
    path = tmp_path / "broken_paper" / "claims.yaml"
    path.parent.mkdir()
    path.write_text(
        'paper: {title: "T", authors: [A], year: 2016}\n'
        "sources:\n  - {file: 000_52fbb3ecf381a3cb.txt, line: 2}\n"
        "claims:" + body
    )
    for load in (lambda: load_paper(path), lambda: load_all(tmp_path)):
        with pytest.raises(ClaimsError) as err:
            load()
        msg = str(err.value)
        assert str(path) in msg, msg
        assert "broken_claim" in msg, msg
        assert field in msg, msg
