"""The run record: one `result.json` per run, written atomically.

This module imports no torch: the collector reads thousands of records with it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
RECORD_NAME = "result.json"

from shortsci_bench.registry import Status, Tier  # noqa: E402  (defined once, there)


class Provenance(BaseModel):
    """Where a result came from: enough to re-run it and to doubt it."""

    model_config = ConfigDict(extra="allow")

    config: dict[str, Any]
    command: str = ""
    git_commit: str | None = None
    git_dirty: bool | None = None
    source_hash: str | None = None  # sha256 of the package, configs and paper code that ran
    versions: dict[str, str] = Field(default_factory=dict)
    device: str = "cpu"
    hostname: str = ""
    data: dict[str, Any] = Field(default_factory=dict)  # source, checksums, split manifests
    started_at: str = ""
    finished_at: str = ""
    # log folders of the attempts this result took (e.g. logs/attempt-1, logs/attempt-2
    # after a resume); empty in records from before attempts had their own folders
    attempts: list[str] = Field(default_factory=list)
    # set when the run trained stacked with other seeds in one process (shortsci_bench.seedbatch):
    # {"seeds": [...], "size": S, "how": ...}; None for a run of one seed
    seed_batch: dict[str, Any] | None = None


class RunRecord(BaseModel):
    """A finished (or failed) run. `metrics` are final values; `history` is per evaluation."""

    model_config = ConfigDict(extra="allow")

    schema_version: int = SCHEMA_VERSION
    experiment: str
    arm: str
    tier: Tier
    # Set when the run's settings differ from the tier's (a command-line change): the run
    # is then judged apart from the tier, as `tier~variant`.
    variant: str | None = None
    settings_hash: str | None = None  # what was computed, seed aside (equal across seeds)
    seed: int
    config_hash: str
    status: Status
    # None where the value was not finite (strict JSON has no NaN or Infinity): `nonfinite`
    # says which and what it was. Older records may hold bare NaN/Infinity and still read.
    metrics: dict[str, float | None] = Field(default_factory=dict)
    history: list[dict[str, float | None]] = Field(default_factory=list)
    nonfinite: dict[str, str] = Field(default_factory=dict)  # "metrics.x" or "history.3.x" -> "inf"
    wall_time_s: float = 0.0
    stub: bool = False  # trained on stand-in data (e.g. the TIMIT stub): never a verdict
    notes: list[str] = Field(default_factory=list)  # e.g. "quick tier uses 14x14 images"
    error: str | None = None
    # Set on records of `python -m shortsci_bench.evaluate` (a checkpoint scored, no
    # training): checkpoint path, sha256, step. Those are written apart from result.json.
    evaluation: dict[str, Any] | None = None
    provenance: Provenance


def write_json_atomic(path: str | os.PathLike, payload: Any) -> Path:
    """Write JSON to `path` via a temp file in the same folder and a rename, so a reader
    never sees a half-written file and a crash never corrupts an existing one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2, sort_keys=True, default=str, allow_nan=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _finite_or_none(value: Any, where: str, flags: dict[str, str]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        flags[where] = repr(value)  # 'inf', '-inf' or 'nan'
        return None
    return value


def strict(record: RunRecord) -> RunRecord:
    """The record with non-finite metric values as None, each named in `nonfinite`."""
    flags = dict(record.nonfinite)
    metrics = {k: _finite_or_none(v, f"metrics.{k}", flags) for k, v in record.metrics.items()}
    history = [
        {k: _finite_or_none(v, f"history.{i}.{k}", flags) for k, v in row.items()}
        for i, row in enumerate(record.history)
    ]
    return record.model_copy(update={"metrics": metrics, "history": history, "nonfinite": flags})


def write_record(run_dir: str | os.PathLike, record: RunRecord) -> Path:
    """Write `result.json` as strict JSON (json.dump refuses NaN/Infinity here)."""
    payload = strict(record).model_dump(mode="json")
    return write_json_atomic(Path(run_dir) / RECORD_NAME, payload)


def read_record(path: str | os.PathLike) -> RunRecord:
    """Read and validate one record; raises ValueError naming the file on any problem."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable run record ({exc})") from exc
    try:
        return RunRecord.model_validate(raw)
    except Exception as exc:  # pydantic.ValidationError, but keep the message short
        raise ValueError(f"{path}: invalid run record ({exc})") from exc
