"""Synthetic run records and claims files, for the collector's tests and benchmark.

Nothing here is ever published: records made here carry `"synthetic": true` in their
provenance config so they cannot be mistaken for real runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from shortsci_bench.runs.record import RECORD_NAME, Provenance, RunRecord, write_record


def make_record(
    experiment: str,
    arm: str,
    tier: str,
    seed: int,
    metrics: dict[str, float],
    *,
    status: str = "completed",
    stub: bool = False,
    history: list[dict[str, float]] | None = None,
    config: dict[str, Any] | None = None,
    finished_at: str = "2026-01-01T00:00:00+00:00",
    notes: list[str] | None = None,
    git_commit: str | None = "0" * 40,
    git_dirty: bool | None = False,
) -> RunRecord:
    """A valid run record; the config hash is derived from experiment, arm, tier and config."""
    config = {
        "synthetic": True,
        "experiment": experiment,
        "arm": arm,
        "tier": tier,
        **(config or {}),
    }
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    return RunRecord(
        experiment=experiment,
        arm=arm,
        tier=tier,
        seed=seed,
        config_hash=digest,
        status=status,
        metrics=metrics,
        history=history or [],
        stub=stub,
        notes=list(notes or []),
        provenance=Provenance(
            config=config,
            command="synthetic",
            finished_at=finished_at,
            git_commit=git_commit,
            git_dirty=git_dirty,
        ),
    )


def run_dir(runs_dir: str | Path, record: RunRecord) -> Path:
    """runs/<experiment>/<arm>/<tier>/seed<N>-<hash8>/, the layout the trainer uses."""
    return (
        Path(runs_dir)
        / record.experiment
        / record.arm
        / record.tier
        / f"seed{record.seed}-{record.config_hash[:8]}"
    )


def write_run(runs_dir: str | Path, record: RunRecord, *, fast: bool = False) -> Path:
    """Write a record where a run would; `fast` skips the atomic fsync (benchmarks only)."""
    folder = run_dir(runs_dir, record)
    if not fast:
        return write_record(folder, record)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RECORD_NAME
    path.write_text(record.model_dump_json())
    return path


def claim(claim_id: str, kind: str, **fields: Any) -> dict[str, Any]:
    """A claim mapping with placeholder statement, quote and source filled in."""
    base = {
        "id": claim_id,
        "kind": kind,
        "statement": f"synthetic claim {claim_id}",
        "quote": f"quote for {claim_id}",
        "source": {"kind": "summary", "file": "000_synthetic.txt", "line": 1},
    }
    base.update(fields)
    return base


def write_claims(
    experiments_dir: str | Path,
    slug: str,
    claims: list[dict[str, Any]],
    *,
    experiments: list[str] | None = None,
    status: str = "active",
    reason: str | None = None,
    title: str | None = None,
) -> Path:
    """Write `experiments_dir/<slug>/claims.yaml` with a placeholder paper header."""
    doc: dict[str, Any] = {
        "paper": {
            "title": title or f"Synthetic paper {slug}",
            "authors": ["A. Author"],
            "year": 2016,
        },
        "sources": [{"file": "000_synthetic.txt", "line": 1}],
        "status": status,
        "experiments": experiments or [],
        "claims": claims,
    }
    if reason:
        doc["reason"] = reason
    path = Path(experiments_dir) / slug / "claims.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
