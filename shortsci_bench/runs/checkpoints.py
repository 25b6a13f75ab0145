"""`last.ckpt` integrity: a sidecar with its sha256 and config hash, checked before resuming.

A bit-flipped, truncated or empty checkpoint, or one from another config, used to be
resumed as it was (different metrics, a `diverged` record, or the same EOFError on every
rerun). Now it is moved aside with one line saying so, and the run starts from scratch.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

SIDECAR_SUFFIX = ".json"  # last.ckpt -> last.ckpt.json


def sidecar(ckpt: Path) -> Path:
    return ckpt.with_name(ckpt.name + SIDECAR_SUFFIX)


def sha256(path: Path) -> str:
    from shortsci_bench.data.mirror import sha256 as file_sha256

    return file_sha256(path)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    """Make renames inside `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: Path, ckpt: Path, config_hash: str) -> None:
    """Replace `ckpt` with the finished `tmp`: fsync it, then write the sidecar, then rename.

    The sidecar keeps the previous checkpoint's hash too, so a crash between the two
    renames leaves a checkpoint that still verifies.
    """
    fsync_file(tmp)
    previous = _read(sidecar(ckpt)).get("sha256")
    meta = {"sha256": sha256(tmp), "previous_sha256": previous, "config_hash": config_hash}
    side_tmp = sidecar(ckpt).with_suffix(".tmp")
    with open(side_tmp, "w") as fh:
        json.dump(meta, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(side_tmp, sidecar(ckpt))
    os.replace(tmp, ckpt)
    fsync_dir(ckpt.parent)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def problem(ckpt: Path, config_hash: str) -> str | None:
    """Why `ckpt` must not be resumed, or None when it verifies."""
    size = ckpt.stat().st_size
    if size == 0:
        return "it is empty (0 bytes)"
    meta = _read(sidecar(ckpt))
    if not meta:
        return _legacy_problem(ckpt)
    if meta.get("config_hash") != config_hash:
        return (
            f"it belongs to another config ({meta.get('config_hash')}, this run is {config_hash})"
        )
    got = sha256(ckpt)
    if got not in (meta.get("sha256"), meta.get("previous_sha256")):
        return (
            f"its sha256 {got[:12]}... does not match {sidecar(ckpt).name} (damaged or truncated)"
        )
    return None


def _legacy_problem(ckpt: Path) -> str | None:
    """A checkpoint from before sidecars: verify it by loading it."""
    import torch

    try:
        torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as exc:
        return f"it does not load ({type(exc).__name__}) and has no {sidecar(ckpt).name}"
    return None


def move_aside(ckpt: Path) -> Path:
    """Rename `ckpt` (and its sidecar) to `<name>.bad-<time>`; return the new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = ckpt.with_name(f"{ckpt.name}.bad-{stamp}")
    os.replace(ckpt, aside)
    if sidecar(ckpt).exists():
        os.replace(sidecar(ckpt), aside.with_name(aside.name + SIDECAR_SUFFIX))
    return aside


def clean_stray_temps(run_dir: Path) -> list[Path]:
    """Delete temp files a killed run left (`checkpoints/*.tmp`, `.result.json.*.tmp`).
    Call only while holding the job's lock: another process's temp files are not stray."""
    stray = [*run_dir.glob("checkpoints/*.tmp"), *run_dir.glob(".*.tmp")]
    for path in stray:
        path.unlink(missing_ok=True)
    return stray
