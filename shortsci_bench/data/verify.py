"""Checksums of the files a dataset actually reads, verified when a run starts.

Only the mirror's archives used to be checked, so an unpacked file damaged afterwards
trained on and reported success. Now `make data` (`mirror.prepare`) records the sha256
of every file it unpacks in `<root>/.<name>/files.json`, and a run checks the files it
reads against it before loading them. Hashes are cached by (size, mtime), so files that
have not changed cost a `stat` each. A file with no recorded hash (downloaded, or a cache
decoded at run time) is recorded at first use and checked from then on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shortsci_bench.data.errors import DataCorruptError

MANIFEST = "files.json"  # {path relative to root: sha256}
HASH_CACHE = "hash-cache.json"  # {path relative to root: [size, mtime_ns, sha256]}


def _dir(name: str, root: Path) -> Path:
    return Path(root) / f".{name}"


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _save(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(Path(path).resolve())


def _sha256(path: Path, rel: str, cache: dict) -> str:
    from shortsci_bench.data.mirror import sha256

    st = path.stat()
    hit = cache.get(rel)
    if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
        return hit[2]
    digest = sha256(path)
    cache[rel] = [st.st_size, st.st_mtime_ns, digest]
    return digest


def record(name: str, root: Path, files: Iterable[Path]) -> dict[str, str]:
    """After unpacking: store the sha256 of `files` (folders: every file in them) as what
    `name` must read."""
    cache = _load(_dir(name, root) / HASH_CACHE)
    paths = [p for f in map(Path, files) for p in (sorted(f.rglob("*")) if f.is_dir() else [f])]
    sums = {_rel(p, root): _sha256(p, _rel(p, root), cache) for p in paths if p.is_file()}
    _save(_dir(name, root) / MANIFEST, sums)
    _save(_dir(name, root) / HASH_CACHE, cache)
    return sums


def recorded(name: str, root: Path) -> dict[str, str]:
    return _load(_dir(name, root) / MANIFEST)


def problems(name: str, root: Path) -> list[str]:
    """What differs from the recorded hashes (for `make data`: unpack again if any)."""
    sums = recorded(name, root)
    if not sums:
        return ["no record of the unpacked files"]
    try:
        check(name, root, [Path(root) / rel for rel in sums])
    except DataCorruptError as exc:
        return [str(exc)]
    return []


def check(name: str, root: Path, files: Iterable[Path], fix: str = "") -> dict[str, str]:
    """Verify the files `name` is about to read; return {relative path: sha256} for the
    record's provenance. Raises DataCorruptError naming the first missing or changed one."""
    root = Path(root)
    sums, cache = recorded(name, root), _load(_dir(name, root) / HASH_CACHE)
    before = (dict(sums), {k: list(v) for k, v in cache.items()})
    out: dict[str, str] = {}
    try:
        for path in files:
            path, rel = Path(path), _rel(path, root)
            if not path.is_file():
                raise DataCorruptError(path, "is missing", fix)
            got = _sha256(path, rel, cache)
            want = sums.setdefault(rel, got)  # first use: recorded now, checked from now on
            if got != want:
                raise DataCorruptError(
                    path, f"sha256 {got[:12]}... differs from the unpacked {want[:12]}...", fix
                )
            out[rel] = got
    finally:
        if (sums, cache) != before:
            try:
                _save(_dir(name, root) / MANIFEST, sums)
                _save(_dir(name, root) / HASH_CACHE, cache)
            except OSError:
                pass  # a read-only data folder: the check still ran, only the cache is lost
    return out


MNIST_RAW = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# Datamodules whose files are known without importing them (torch): checked by the command
# line before the heavy imports. Others are checked when they load, seconds later.
_MNIST_MODULES = (
    "shortsci_bench.data.mnist.MNISTDataModule",
    "shortsci_bench.data.sequential_mnist.SequentialMNISTDataModule",
)


def mnist_files(root: str | Path) -> list[Path]:
    """The four idx files torchvision's MNIST reads."""
    return [Path(root) / "MNIST" / "raw" / name for name in MNIST_RAW]


def check_before_imports(dataset_cfg: Any) -> None:
    """Verify the files a run's dataset will read, when its datamodule is one known here
    and the files are there (missing files are the loader's to unpack or report)."""
    if not dataset_cfg or dataset_cfg.get("_target_") not in _MNIST_MODULES:
        return
    root = Path(str(dataset_cfg.get("root") or "data"))
    files = mnist_files(root)
    if all(f.is_file() for f in files):
        check("mnist", root, files)
