"""Collect run records and judge every claim.

python -m shortsci_bench.collect                       # table of verdicts (runs/ + published)
python -m shortsci_bench.collect --runs runs/ --experiment batchnorm_mnist
python -m shortsci_bench.collect --format json --out out/   # out/claims.json
python -m shortsci_bench.collect --format html --out report/   # report/index.html
python -m shortsci_bench.collect --publish             # copy completed runs to experiments/*/results/
python -m shortsci_bench.collect --readme README.md    # regenerate the README results table
python -m shortsci_bench.collect --check-readme README.md   # exit 1 if it is out of date
python -m shortsci_bench.collect --wandb               # mirror the verdict table to wandb
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from shortsci_bench.claims.schema import EXPERIMENTS_DIR
from shortsci_bench.collect import collect, default_runs, published_dirs
from shortsci_bench.collect.tables import compact_lines, print_table, to_csv, to_json


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m shortsci_bench.collect",
        description="Read run records (result.json), aggregate seeds and judge every claim.",
    )
    p.add_argument(
        "--runs",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="folders searched recursively for result.json "
        "(default: $SHORTSCI_RUNS or runs/, and every experiments/*/results/)",
    )
    p.add_argument(
        "--experiments-dir",
        type=Path,
        default=EXPERIMENTS_DIR,
        metavar="DIR",
        help="where the */claims.yaml files live (default: the repository's experiments/)",
    )
    p.add_argument("--experiment", metavar="NAME", help="only this experiment's runs and claims")
    p.add_argument(
        "--paper", action="append", metavar="SLUG", help="only these papers (repeatable)"
    )
    p.add_argument(
        "--verdict", action="append", metavar="V", help="only these verdicts (repeatable)"
    )
    p.add_argument("--tier", action="append", metavar="T", help="only verdicts at these tiers")
    p.add_argument(
        "--all", action="store_true", help="list not_attempted and not_checkable claims too"
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="the full table (rule, reasons, indicative rows) instead of one line per claim",
    )
    p.add_argument(
        "--runs-only",
        action="store_true",
        help="judge only your own runs ($SHORTSCI_RUNS or runs/), not the published records",
    )
    p.add_argument(
        "--format",
        choices=["table", "json", "csv", "html"],
        help="output: a console table (default), claims.json, claims.csv, or an HTML report",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="folder for claims.json / claims.csv (stdout when absent) or the HTML report "
        "(default report/)",
    )
    p.add_argument(
        "--publish",
        action="store_true",
        help="copy completed run records into experiments/<paper>/results/ (idempotent)",
    )
    p.add_argument("--wandb", action="store_true", help="push the verdict table to wandb")
    p.add_argument(
        "--lenient",
        action="store_true",
        help="judge what can be judged when a claims file is invalid or names an unknown "
        "experiment, arm or metric (warnings; default: exit 2 listing each problem)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="a verdict resting on seeds from several commits is inconclusive",
    )
    p.add_argument(
        "--readme",
        type=Path,
        metavar="FILE",
        help="regenerate the results table between the markers in FILE from published records",
    )
    p.add_argument(
        "--check-readme",
        type=Path,
        metavar="FILE",
        help="exit 1 when FILE's results table differs from the published records",
    )
    return p


def claims_problems(experiments_dir: Path) -> list[str]:
    """One line per invalid claims file, and per claim naming an experiment, arm or metric
    that does not exist (file, claim and field). Without this, a misspelt name became a
    silent `inconclusive`, and an invalid file silently dropped its paper's claims."""
    from shortsci_bench import registry
    from shortsci_bench.claims.schema import ClaimsError, load_paper, registry_problems

    real = Path(experiments_dir).resolve() == registry.EXPERIMENTS_DIR.resolve()
    known = set(registry.experiments())
    problems = []
    for path in sorted(Path(experiments_dir).glob("*/claims.yaml")):
        try:
            paper = load_paper(path)
        except (ClaimsError, OSError) as exc:
            problems.append(" ".join(str(exc).split()))  # names the file, claim and field
            continue
        if not real:  # another folder (tests, drafts) has no registry of its own:
            # check only the claims whose experiment the registry knows
            paper = paper.model_copy(
                update={
                    "experiments": [e for e in paper.experiments if e in known],
                    "claims": [c for c in paper.claims if getattr(c, "experiment", None) in known],
                }
            )
        problems += [f"{path}: {line}" for line in registry_problems(paper)]
    return problems


def _warn(lines: list[str]) -> None:
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)


def _readme(args: argparse.Namespace) -> int:
    from shortsci_bench.collect import readme

    published = collect(published_dirs(args.experiments_dir), args.experiments_dir)
    status = 0
    if args.readme is not None:
        try:
            changed = readme.update(args.readme, published)
        except readme.MarkersMissing as exc:
            print(f"error: {args.readme}: {exc}", file=sys.stderr)
            return 2
        print(f"{args.readme}: results table {'updated' if changed else 'already up to date'}")
    if args.check_readme is not None:
        try:
            current = readme.is_current(args.check_readme, published)
        except readme.MarkersMissing as exc:
            print(f"error: {args.check_readme}: {exc}", file=sys.stderr)
            return 2
        if not current:
            print(
                f"{args.check_readme}: results table is out of date; run "
                f"`python -m shortsci_bench.collect --readme {args.check_readme}`",
                file=sys.stderr,
            )
            status = 1
        else:
            print(f"{args.check_readme}: results table is up to date")
    return status


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problems = claims_problems(args.experiments_dir)
    if problems and not args.lenient:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        print(
            f"{len(problems)} problem(s) in the claims: fix them, or pass --lenient to judge "
            "the rest",
            file=sys.stderr,
        )
        return 2
    _warn(problems)
    runs = args.runs if args.runs is not None else default_runs(args.experiments_dir)
    if args.runs_only:
        runs = args.runs if args.runs is not None else default_runs(args.experiments_dir)[:1]
    collection = collect(runs, args.experiments_dir, args.experiment, strict=args.strict)
    _warn(collection.warnings)

    if args.publish:
        from shortsci_bench.collect.publish import publish

        report = publish(collection.records, collection.papers, args.experiments_dir)
        _warn(report.skipped)
        print(
            f"published {len(report.written)} run folders "
            f"({len(report.unchanged)} already up to date) under {args.experiments_dir}",
            file=sys.stderr,
        )
        if report.written and args.runs is None:
            # The default runs include the published folders: re-read so outputs agree.
            collection = collect(runs, args.experiments_dir, args.experiment, strict=args.strict)

    status = 0
    if args.readme is not None or args.check_readme is not None:
        status = _readme(args)

    fmt = args.format
    if fmt is None and args.readme is None and args.check_readme is None:
        fmt = "table"
    if fmt == "table" and args.full:
        print_table(collection)
    elif fmt == "table":
        width = shutil.get_terminal_size((100, 24)).columns
        for line in compact_lines(
            collection,
            width,
            set(args.paper or ()),
            set(args.verdict or ()),
            set(args.tier or ()),
            args.all,
        ):
            print(line)
    elif fmt in ("json", "csv"):
        text = to_json(collection) if fmt == "json" else to_csv(collection)
        if args.out is None:
            sys.stdout.write(text)
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / f"claims.{fmt}"
            path.write_text(text)
            print(f"wrote {path}", file=sys.stderr)
    elif fmt == "html":
        from shortsci_bench.report import write_report

        index = write_report(collection, args.out or Path("report"))
        print(f"wrote {index}", file=sys.stderr)

    if args.wandb:
        from shortsci_bench.collect.wandb_sync import push_verdicts

        try:
            push_verdicts(collection)
        except Exception as exc:  # wandb's own errors (no login, no network) are long
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(
                f"error: wandb refused the upload ({first}); run `wandb login` (or set "
                "WANDB_MODE=offline and sync later with scripts/wandb_sync.sh)",
                file=sys.stderr,
            )
            return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
