"""Publishing: copy run records of clean commits into `experiments/<paper>/results/`.

The published copy is what the verdicts in the README and the catalogue rest on, so it
is copied byte for byte (provenance intact), folder by folder atomically, and a second
publish of the same run changes nothing. Checkpoints and logger folders are left behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from shortsci_bench.claims.schema import PaperClaims
from shortsci_bench.collect.records import LoadedRecord, tier_label
from shortsci_bench.runs import provenance
from shortsci_bench.runs.record import RECORD_NAME

MAX_FILE_BYTES = 1 << 20  # "small files": configs, logs, metrics csv; not checkpoints
SKIP_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".safetensors", ".npz", ".npy", ".tmp", ".lock")
KEEP_DIRS = {".hydra"}  # the composed config and overrides: small and part of provenance


@dataclass
class PublishReport:
    """What a publish did: folders written, folders already up to date, records skipped."""

    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def experiment_papers(papers: list[PaperClaims]) -> dict[str, list[str]]:
    """experiment name -> paper slugs listing it under `experiments:`."""
    out: dict[str, list[str]] = {}
    for p in papers:
        for exp in p.experiments:
            out.setdefault(exp, []).append(p.slug)
    return out


def published_path(experiments_dir: Path, slug: str, lr: LoadedRecord) -> Path:
    """experiments/<slug>/results/<experiment>/<arm>/<tier>/seed<N>-<hash8>/"""
    r = lr.record
    return (
        experiments_dir
        / slug
        / "results"
        / r.experiment
        / r.arm
        / tier_label(r)
        / f"seed{r.seed}-{r.config_hash[:8]}"
    )


def _small_files(run_dir: Path) -> list[Path]:
    """Files worth publishing beside result.json, relative to the run folder."""
    out = []
    for entry in run_dir.iterdir():
        if entry.is_file() and not entry.is_symlink():
            # endswith, not Path.suffix: the trainer's `.lock` file has no suffix to Path.
            if not entry.name.endswith(SKIP_SUFFIXES) and entry.stat().st_size <= MAX_FILE_BYTES:
                out.append(entry.relative_to(run_dir))
        elif entry.is_dir() and entry.name in KEEP_DIRS:
            for sub in entry.rglob("*"):
                if sub.is_file() and sub.stat().st_size <= MAX_FILE_BYTES:
                    out.append(sub.relative_to(run_dir))
    return sorted(out)


def _same_tree(src: Path, dst: Path, files: list[Path]) -> bool:
    if not dst.is_dir():
        return False
    dst_files = sorted(p.relative_to(dst) for p in dst.rglob("*") if p.is_file())
    if dst_files != files:
        return False
    return all((src / f).read_bytes() == (dst / f).read_bytes() for f in files)


def _publish_one(lr: LoadedRecord, dest: Path) -> bool:
    """Copy one run folder's small files to `dest` atomically; False if already there."""
    files = _small_files(lr.run_dir)
    if Path(RECORD_NAME) not in files:
        files.append(Path(RECORD_NAME))
        files.sort()
    if _same_tree(lr.run_dir, dest, files):
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Build the copy beside its destination, then rename it into place: a reader sees the
    # old folder or the new one, never a half-copied one.
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        for rel in files:
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(lr.run_dir / rel, target)
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.replace(dest, old / dest.name)
            os.replace(staging, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return True


def provenance_problem(record) -> str | None:
    """Why a record may not be published (None when it may): published records come from a
    clean checkout of a commit whose code is the code that ran. Failed and diverged runs
    are published like completed ones: they count in the verdicts."""
    prov = record.provenance
    if prov.git_dirty is not False:
        state = "a dirty tree" if prov.git_dirty else "a tree of unknown state"
        return (
            f"ran from {state}; run it again from a clean checkout (a `git worktree`) of a commit"
        )
    if not prov.git_commit:
        return "no commit recorded"
    source = getattr(prov, "source_hash", None)
    if source is not None:
        at_commit = provenance.source_hash_at(prov.git_commit)
        if at_commit is None:
            return f"commit {prov.git_commit[:10]} is not in this repository"
        if at_commit != source:
            return f"the code that ran differs from commit {prov.git_commit[:10]} (source hash)"
    return None


def publish(
    records: list[LoadedRecord],
    papers: list[PaperClaims],
    experiments_dir: Path,
) -> PublishReport:
    """Publish every record (completed, diverged or failed) of a clean commit into each
    paper that lists its experiment; refused records are listed in `skipped`.

    Records already under `experiments_dir` (earlier publications) are not re-published.
    """
    report = PublishReport()
    by_experiment = experiment_papers(papers)
    root = experiments_dir.resolve()
    # One run per destination folder: when a seed was re-run with the same config, the
    # most recently finished run is the one published.
    chosen: dict[Path, LoadedRecord] = {}
    for lr in records:
        r = lr.record
        if lr.path.resolve().is_relative_to(root):
            continue
        refusal = provenance_problem(r)
        if refusal:
            report.skipped.append(f"{lr.path}: not published: {refusal}")
            continue
        slugs = by_experiment.get(r.experiment)
        if not slugs:
            report.skipped.append(f"{lr.path}: no claims file lists experiment {r.experiment!r}")
            continue
        for slug in slugs:
            dest = published_path(experiments_dir, slug, lr)
            old = chosen.get(dest)
            if old is None or r.provenance.finished_at > old.record.provenance.finished_at:
                chosen[dest] = lr
    for dest, lr in sorted(chosen.items()):
        (report.written if _publish_one(lr, dest) else report.unchanged).append(dest)
    return report
