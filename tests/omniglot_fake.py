"""A tiny Omniglot mirror in the real format, for tests: npz arrays of (characters, 20, 105,
105) bool (True = background), one official-style small zip, and SHA256SUMS.

Each character is a few ink squares at fixed places; each drawer shifts them a little, so
drawings of one character resemble each other and differ from other characters.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

N_BACKGROUND, N_EVALUATION = 12, 8  # 20 characters in all
TINY_SPLIT = {"train": [(1, 14)], "test": [(15, 20)], "note": "tests: 14 / 6 fake characters"}
ZIP_ALPHABET = ("Latin", 4, 3)  # an alphabet named in the fake zip: first id 4, 3 characters


def fake_characters(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = np.ones((n, 20, 105, 105), dtype=bool)
    for c in range(n):
        corners = rng.integers(10, 85, size=(5, 2))
        for d in range(20):
            dy, dx = rng.integers(-3, 4, size=2)
            for y, x in corners:
                images[c, d, y + dy : y + dy + 10, x + dx : x + dx + 10] = False
    return images


def write_fake_mirror(mirror: Path) -> Path:
    """Write `mirror/omniglot/...` and `mirror/SHA256SUMS`; return `mirror`."""
    d = mirror / "omniglot"
    d.mkdir(parents=True, exist_ok=True)
    bg = fake_characters(N_BACKGROUND, 0)
    ev = fake_characters(N_EVALUATION, 1)
    for name, arr in (("images_background", bg), ("images_evaluation", ev)):
        labels = np.repeat(np.arange(len(arr))[:, None], 20, axis=1)
        np.savez_compressed(d / f"{name}.npz", images=arr, labels=labels)
    alphabet, first, count = ZIP_ALPHABET
    with zipfile.ZipFile(d / "images_background_small1.zip", "w") as zf:
        for k in range(count):
            for drawer in (0, 1):
                buf = io.BytesIO()
                Image.fromarray(bg[first - 1 + k, drawer]).save(buf, format="PNG")
                member = f"images_background_small1/{alphabet}/character{k + 1:02d}/{first + k:04d}_{drawer + 1:02d}.png"
                zf.writestr(member, buf.getvalue())
    lines = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  ./omniglot/{p.name}"
        for p in sorted(d.iterdir())
    ]
    (mirror / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return mirror


def tiny_split_checksum() -> str:
    import json

    train = [i for lo, hi in TINY_SPLIT["train"] for i in range(lo, hi + 1)]
    test = [i for lo, hi in TINY_SPLIT["test"] for i in range(lo, hi + 1)]
    blob = json.dumps(
        {"name": "tiny", "train": train, "test": test}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def register_tiny_split(monkeypatch) -> None:
    from shortsci_bench.data import omniglot as O

    monkeypatch.setitem(O.SPLITS, "tiny", TINY_SPLIT)
    monkeypatch.setitem(O.SPLIT_SHA256, "tiny", tiny_split_checksum())


def fake_smoke_overrides(experiment: str, arm: str, mirror: Path, root: Path) -> list[str]:
    """A smoke run of an Omniglot experiment on the fake mirror's tiny split (register it
    first: `register_tiny_split`)."""
    return [
        f"+experiment={experiment}",
        f"arm={arm}",
        "tier=smoke",
        "logger=none",
        f"dataset.mirror={mirror}",
        f"dataset.root={root}",
        "dataset.download=false",
        "dataset.split=tiny",
    ]
