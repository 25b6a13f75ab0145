"""The offline data mirror: verify `SHA256SUMS` and unpack into torchvision's layouts.

`python -m shortsci_bench.data.mirror [--mirror DIR] [--root data] [--only mnist,...]`
is what `make data` runs. Each dataset family registers an unpacker here; unpacking
is idempotent (a stamp file records the checksums it was made from).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from shortsci_bench.data import verify as unpacked_files

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO / "data"
STAMP = ".mirror-stamp.json"

UNPACKERS: dict[str, Callable[[Path, Path], list[Path]]] = {}


def default_mirror() -> Path | None:
    """`$SHORTSCI_MIRROR`, else `../shared/data` beside the checkout when present."""
    env = os.environ.get("SHORTSCI_MIRROR")
    if env:
        return Path(env)
    candidate = REPO.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_sums(mirror: Path) -> dict[str, str]:
    sums = {}
    path = mirror / "SHA256SUMS"
    if not path.exists():
        return sums
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip().removeprefix("./")] = digest
    return sums


def verify(mirror: Path, prefix: str) -> dict[str, str]:
    """Check every mirror file under `prefix/`; return {relative path: sha256}."""
    sums = {k: v for k, v in read_sums(mirror).items() if k.startswith(prefix + "/")}
    if not sums:
        raise FileNotFoundError(f"{mirror}/SHA256SUMS lists no files under {prefix}/")
    for name, digest in sums.items():
        got = sha256(mirror / name)
        if got != digest:
            raise ValueError(
                f"{mirror / name}: sha256 {got[:12]}... does not match SHA256SUMS ({digest[:12]}...); "
                "the mirror copy is damaged: fetch it again"
            )
    return sums


def _stamp_ok(dest: Path, sums: dict[str, str]) -> bool:
    try:
        return json.loads((dest / STAMP).read_text()) == sums
    except (OSError, ValueError):
        return False


def _write_stamp(dest: Path, sums: dict[str, str]) -> None:
    tmp = dest / (STAMP + ".tmp")
    tmp.write_text(json.dumps(sums, indent=1, sort_keys=True))
    os.replace(tmp, dest / STAMP)


def unpacker(name: str):
    def register(fn):
        UNPACKERS[name] = fn
        return fn

    return register


@unpacker("mnist")
def unpack_mnist(mirror: Path, root: Path) -> list[Path]:
    """gunzip the four idx files into `root/MNIST/raw/`, where torchvision.datasets.MNIST reads."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out = []
    for gz in sorted((mirror / "mnist").glob("*-ubyte.gz")):
        target = raw / gz.name.removesuffix(".gz")
        tmp = target.with_suffix(".tmp")
        with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, target)
        out.append(target)
    return out


def prepare(
    name: str, root: Path | None = None, mirror: Path | None = None, quiet: bool = False
) -> Path:
    """Unpack dataset `name` from the mirror into `root` unless already done; return `root`."""
    root = Path(root or DEFAULT_ROOT)
    mirror = Path(mirror) if mirror else default_mirror()
    if mirror is None or not (mirror / name).is_dir():
        raise FileNotFoundError(f"no mirror of {name}: looked for {mirror}/{name}")
    if name not in UNPACKERS:
        _load_family_modules()
    dest = root / f".{name}"
    dest.mkdir(parents=True, exist_ok=True)
    sums = verify(mirror, name)
    # Unpacked files deleted or changed since (or never recorded) are unpacked again.
    damaged = unpacked_files.problems(name, root) if _stamp_ok(dest, sums) else ["new"]
    if not damaged:
        return root
    if not quiet:
        why = "" if damaged == ["new"] else f" ({damaged[0].split(':')[0]})"
        print(f"[data] unpacking {name} from {mirror} into {root}{why}", file=sys.stderr)
    unpacked_files.record(name, root, UNPACKERS[name](mirror, root))
    _write_stamp(dest, sums)
    return root


def checksums(name: str, root: Path | None = None) -> dict[str, str]:
    """The mirror checksums a prepared dataset was made from ({} if it came another way)."""
    try:
        return json.loads((Path(root or DEFAULT_ROOT) / f".{name}" / STAMP).read_text())
    except (OSError, ValueError):
        return {}


def _load_family_modules() -> None:
    # Families register their unpackers on import; import lazily to keep `make data` light.
    import importlib

    for mod in ("cifar10", "omniglot"):
        try:
            importlib.import_module(f"shortsci_bench.data.{mod}")
        except ModuleNotFoundError:
            pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--mirror", type=Path, default=None, help="mirror folder (default: ../shared/data)"
    )
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="where datasets are unpacked")
    p.add_argument(
        "--only", default="", help="comma-separated datasets (default: all in the mirror)"
    )
    args = p.parse_args(argv)
    mirror = args.mirror or default_mirror()
    if mirror is None or not mirror.is_dir():
        print(
            "[data] no mirror found (../shared/data or $SHORTSCI_MIRROR): nothing to unpack; "
            "runs will download where there is internet.",
            file=sys.stderr,
        )
        return 0
    _load_family_modules()
    names = [n for n in args.only.split(",") if n] or [
        n for n in UNPACKERS if (mirror / n).is_dir()
    ]
    for name in names:
        prepare(name, args.root, mirror)
        print(f"[data] {name}: ready in {args.root}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    # Under `python -m` this file runs as `__main__`, a second copy of the module; family
    # modules register their unpackers in `shortsci_bench.data.mirror`, so run that one.
    from shortsci_bench.data.mirror import main as registered_main

    sys.exit(registered_main())
