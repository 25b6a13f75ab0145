"""Omniglot (Lake, Salakhutdinov & Tenenbaum, Science 2015) through `torchvision.datasets.Omniglot`.

The few-shot papers this feeds: Vinyals et al., "Matching Networks for One Shot Learning"
(NIPS 2016, arXiv 1606.04080) and Santoro et al., "Meta-Learning with Memory-Augmented
Neural Networks" (ICML 2016, arXiv 1605.06065). Both split the 1623 characters into 1200
training and 423 test characters, resize the 105x105 drawings (28x28 and 20x20) and add
rotations by 90, 180 and 270 degrees of the training characters as new classes.

From the mirror (`../shared/data/omniglot/`, see its README) to tensors:

1. `unpack_omniglot` (registered with the mirror as "omniglot") writes the npz arrays as PNGs
   in torchvision's layout, `<root>/omniglot-py/images_{background,evaluation}/<alphabet>/
   <character>/<id>_<drawer>.png`. The npz keeps no names: the alphabets that appear in the
   official small background zips keep their real names (`Balinese/character01`, ...);
   every other run of characters is named for where it starts, `alphabet_from_id_0001/
   character01`, and is not claimed to be one real alphabet. File ids are global and
   1-based: background characters 0001-0964 (as in the original files, checked against the
   zips), evaluation characters 0965-1623 (their index in the evaluation set + 965).
2. `OmniglotFolders`, a `torchvision.datasets.Omniglot` whose only change is that it accepts
   the unpacked folders in place of the md5 of the original zips, parses them with the stock
   code and decodes every PNG once.
3. `omniglot_tensor` resizes once (antialiased bilinear) and caches `[1623, 20, S, S]` uint8
   ink intensities (255 = ink) under `<root>/omniglot-py/cache/`.
4. `split_manifest` pins which characters train and which test (`SPLITS`, with the sha256 of
   each expanded manifest pinned in `SPLIT_SHA256`); `OmniglotDataModule` hands out seeded
   episodes (`data/episodes.py`) and the pinned evaluation episodes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import time
import zipfile
from collections.abc import Sequence
from os.path import join
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision.datasets import Omniglot

from shortsci_bench.data.episodes import EVAL_SEED, PinnedEpisodes, PinnedSequences, check_pinned, episode_batch, index_sha256, parse_setting, pinned_episodes, pinned_sequences, sequence_batch
from shortsci_bench.data import mirror as mirror_mod
from shortsci_bench.data import verify as unpacked_files
from shortsci_bench.data.batches import GeneratedSteps, TrainStream, start_at_global_step
from shortsci_bench.data.errors import DatasetMissingError, host_reachable
from shortsci_bench.data.mirror import unpacker

N_DRAWERS = 20
N_BACKGROUND, N_EVALUATION = 964, 659
N_CHARACTERS = N_BACKGROUND + N_EVALUATION  # 1623
SIDE = 105
OMNIGLOT_HOST = "raw.githubusercontent.com"
OMNIGLOT_FILES = "images_background.npz, images_evaluation.npz (mirror) or the two original zips"
# (torchvision folder, npz file); global ids number the background characters first
SETS = (
    ("images_background", "images_background.npz"),
    ("images_evaluation", "images_evaluation.npz"),
)
CACHE_VERSION = 1  # bump when decoding or resizing changes
_FILE = re.compile(r"^(\d+)_(\d+)\.png$")


# --- the class split: pinned manifests ------------------------------------------------------

# Character ids are the global 1-based ids above. The manifest is the list of id ranges;
# its checksum is the sha256 of the expanded JSON (`_manifest_json`), pinned below so that
# an edited split fails loudly instead of silently changing every result.
SPLITS: dict[str, dict[str, Any]] = {
    "vinyals_1200": {
        "train": [(1, 1200)],
        "test": [(1201, N_CHARACTERS)],
        "note": "1200 training / 423 test characters over all 1623, as in Vinyals et al. and "
        "Santoro et al. (which 1200 is not stated; ours: the first 1200 ids, i.e. the 964 "
        "background characters and the first 236 evaluation characters)",
    },
    "lake": {
        "train": [(1, N_BACKGROUND)],
        "test": [(N_BACKGROUND + 1, N_CHARACTERS)],
        "note": "Lake et al.'s background / evaluation split: 964 / 659 characters, "
        "disjoint alphabets",
    },
}
SPLIT_SHA256 = {
    "vinyals_1200": "21344c28263fa5396bc16cdf8fbe28c3d4932a1544d532a3ede0be16130517ce",
    "lake": "e17d53f2abf4a2db8b5a0c21f95f845a42614f6b18521b9ec3e4e4ab1b5c72e0",
}


def _expand(ranges: Sequence[Sequence[int]]) -> list[int]:
    return [i for lo, hi in ranges for i in range(lo, hi + 1)]


def _manifest_json(name: str) -> str:
    spec = SPLITS[name]
    body = {"name": name, "train": _expand(spec["train"]), "test": _expand(spec["test"])}
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def split_manifest(name: str) -> dict[str, Any]:
    """The pinned class split `name`: 1-based global character ids and the manifest sha256.

    >>> m = split_manifest("vinyals_1200"); len(m["train"]), len(m["test"])
    (1200, 423)
    """
    if name not in SPLITS:
        raise ValueError(f"split {name!r}: choose one of {sorted(SPLITS)}")
    blob = _manifest_json(name)
    digest = hashlib.sha256(blob.encode()).hexdigest()
    if digest != SPLIT_SHA256[name]:
        raise ValueError(
            f"the Omniglot split {name!r} no longer matches its pinned checksum "
            f"({digest[:12]}... != {SPLIT_SHA256[name][:12]}...): splits must not change; "
            "add a new split under a new name instead"
        )
    body = json.loads(blob)
    return {**body, "sha256": digest, "note": SPLITS[name]["note"]}


# --- mirror -> torchvision's folder layout ---------------------------------------------------


def known_alphabets(mirror_dir: Path) -> dict[str, tuple[int, int]]:
    """{alphabet: (first global id, number of characters)} from the official small zips.

    Their file names carry the global ids (`Balinese/character01/0108_01.png`).
    """
    found: dict[str, set[int]] = {}
    for zpath in sorted(mirror_dir.glob("images_background_small*.zip")):
        with zipfile.ZipFile(zpath) as zf:
            for name in zf.namelist():
                parts = name.split("/")
                m = _FILE.match(parts[-1]) if len(parts) == 4 else None
                if m:
                    found.setdefault(parts[1], set()).add(int(m.group(1)))
    out = {}
    for alphabet, ids in found.items():
        lo, hi = min(ids), max(ids)
        if hi - lo + 1 != len(ids):
            raise ValueError(f"{alphabet}: character ids in the small zips are not contiguous")
        out[alphabet] = (lo, len(ids))
    return out


def folder_names(
    first_id: int, n: int, alphabets: dict[str, tuple[int, int]]
) -> list[tuple[str, str]]:
    """(alphabet folder, character folder) for global ids first_id .. first_id + n - 1.

    Known alphabets get their real names and `characterNN` numbered from 1, as in the original;
    each run of ids outside them becomes `alphabet_from_id_XXXX` (XXXX = its first id).
    """
    owner: dict[int, tuple[str, int]] = {}
    for alphabet, (lo, count) in alphabets.items():
        for k in range(count):
            owner[lo + k] = (alphabet, k + 1)
    names, current, k = [], None, 0
    for gid in range(first_id, first_id + n):
        if gid in owner:
            alphabet, number = owner[gid]
            current = None
        else:
            if current is None:
                current, k = f"alphabet_from_id_{gid:04d}", 0
            k += 1
            alphabet, number = current, k
        names.append((alphabet, f"character{number:02d}"))
    return names


def _check_against_zips(mirror_dir: Path, images: np.ndarray, alphabets: dict) -> None:
    """The npz's background ids must be the zips' ids: compare the first drawing of each alphabet."""
    for zpath in sorted(mirror_dir.glob("images_background_small*.zip")):
        with zipfile.ZipFile(zpath) as zf:
            for alphabet, (lo, _) in alphabets.items():
                member = f"{zpath.stem}/{alphabet}/character01/{lo:04d}_01.png"
                if member not in zf.namelist():
                    continue
                png = np.array(Image.open(io.BytesIO(zf.read(member))))
                if not np.array_equal(png.astype(bool), images[lo - 1, 0]):
                    raise ValueError(f"{member} differs from images_background.npz[{lo - 1}, 0]")


@unpacker("omniglot")
def unpack_omniglot(mirror: Path, root: Path) -> list[Path]:
    """Write the mirror's npz arrays as PNGs where `torchvision.datasets.Omniglot` reads them."""
    src = Path(mirror) / "omniglot"
    base = Path(root) / Omniglot.folder
    alphabets = known_alphabets(src)
    out = []
    first_id = 1
    for folder, npz_name in SETS:
        with np.load(src / npz_name) as npz:
            images = npz["images"]  # (characters, 20, 105, 105) bool, True = background
        if folder == "images_background":
            _check_against_zips(src, images, alphabets)
        names = folder_names(first_id, len(images), alphabets)
        tmp = base / (folder + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for c, (alphabet, character) in enumerate(names):
            d = tmp / alphabet / character
            d.mkdir(parents=True)
            for drawer in range(images.shape[1]):
                # mode "1" PNG, white background as in the original files: lossless
                Image.fromarray(images[c, drawer]).save(
                    d / f"{first_id + c:04d}_{drawer + 1:02d}.png"
                )
        final = base / folder
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        out.append(final)
        first_id += len(images)
    return out


class OmniglotFolders(Omniglot):
    """`torchvision.datasets.Omniglot`, relaxing only the md5 check of the original zips.

    The folders unpacked from the mirror (or from the original zips) are accepted as they
    are; parsing and loading are the stock code.
    """

    def _check_integrity(self) -> bool:
        return os.path.isdir(join(self.root, self._get_target_folder()))


def _ensure_folders(root: Path, download: bool) -> str:
    """With no mirror: use the folders under `root/omniglot-py` or download the original zips."""
    base = root / Omniglot.folder
    if all((base / folder).is_dir() for folder, _ in SETS):
        return "unpacked"
    if not download:
        raise DatasetMissingError("Omniglot", base, OMNIGLOT_FILES, "(dataset.download=false)")
    if not host_reachable(OMNIGLOT_HOST):
        raise DatasetMissingError(
            "Omniglot", base, OMNIGLOT_FILES, f"(no network: {OMNIGLOT_HOST} unreachable)"
        )
    try:
        for background in (True, False):
            Omniglot(root, background=background, download=True)
    except Exception as exc:  # network errors come in many types
        raise DatasetMissingError(
            "Omniglot", base, OMNIGLOT_FILES, f"(download failed: {exc})"
        ) from None
    return "download"


def decode_omniglot(root: Path, size: int) -> torch.Tensor:
    """Decode every drawing with the stock torchvision parsing: `[characters, 20, size, size]`
    uint8 ink (1623 characters for the real data set).

    Rows are global character ids - 1 and columns drawers - 1, read from the file names
    (`XXXX_YY.png`), so torchvision's unsorted folder order does not matter. Ids of each set
    are taken relative to the set's smallest id, as in the npz, so original zips work too.
    """
    parts = []
    for background in (True, False):
        ds = OmniglotFolders(str(root), background=background)
        parsed = [_FILE.match(name) for name, _ in ds._flat_character_images]
        if not all(parsed):
            raise ValueError(f"{ds.target_folder}: a file name is not XXXX_YY.png")
        ids = [int(m.group(1)) for m in parsed]
        offset = min(ids)
        n_chars = len(ds._characters)
        out = torch.zeros(n_chars, N_DRAWERS, size, size, dtype=torch.uint8)
        seen = torch.zeros(n_chars, N_DRAWERS, dtype=torch.bool)
        chunk = 2000
        for start in range(0, len(ds), chunk):
            idx = range(start, min(start + chunk, len(ds)))
            ink = np.stack([np.asarray(ds[i][0]) < 128 for i in idx])  # "L": 0 = ink
            x = torch.from_numpy(ink).float().unsqueeze(1)
            x = TF.resize(x, [size, size], antialias=True).squeeze(1)
            x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
            for j, i in enumerate(idx):
                c, d = ids[i] - offset, int(parsed[i].group(2)) - 1
                out[c, d] = x[j]
                seen[c, d] = True
        if not seen.all():
            raise ValueError(f"{ds.target_folder}: {int((~seen).sum())} drawings missing")
        parts.append(out)
    return torch.cat(parts)


def omniglot_tensor(
    root: str | Path, size: int, mirror: str | Path | None = None, download: bool = True
) -> tuple[torch.Tensor, dict[str, Any]]:
    """All 1623 x 20 drawings at `size` x `size` (uint8, 255 = ink), decoded once and cached.

    The cache is keyed by the mirror checksums it was made from (the unpack stamp), so a
    cache made here and carried elsewhere with its stamp is used without the PNG folders.
    """
    root = Path(root)
    mirror_path = Path(mirror) if mirror else mirror_mod.default_mirror()
    source = None
    if mirror_path is not None and (mirror_path / "omniglot").is_dir():
        mirror_mod.prepare("omniglot", root, mirror_path)  # idempotent: verifies, unpacks once
        source = "mirror"
    sums = mirror_mod.checksums("omniglot", root)
    key = hashlib.sha256(
        json.dumps([sums, size, CACHE_VERSION], sort_keys=True).encode()
    ).hexdigest()
    cache = root / Omniglot.folder / "cache" / f"omniglot_{size}px_{key[:12]}.pt"
    info = {"source": source or "unpacked", "mirror_checksums": sums, "cache": str(cache)}
    fix = f"delete {cache} to decode it afresh"
    if cache.exists():
        info["files"] = unpacked_files.check("omniglot-cache", root, [cache], fix)
        return torch.load(cache, weights_only=True), {**info, "cache_hit": True}
    if source is None:
        info["source"] = _ensure_folders(root, download)
    t0 = time.perf_counter()
    images = decode_omniglot(root, size)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    torch.save(images, tmp)
    os.replace(tmp, cache)
    info["files"] = unpacked_files.record("omniglot-cache", root, [cache])  # checked when read
    return images, {**info, "cache_hit": False, "decode_s": time.perf_counter() - t0}


def with_rotations(images: torch.Tensor) -> torch.Tensor:
    """Classes x4: each character, then the same characters rotated by 90, 180, 270 degrees."""
    return torch.cat([torch.rot90(images, k, dims=(-2, -1)) for k in range(4)])


# --- the datamodule ---------------------------------------------------------------------------


class OmniglotDataModule(L.LightningDataModule):
    """Omniglot few-shot data as uint8 tensors on the training device.

    `protocol` says what one training step receives:
    - `episodes`: `episodes_per_step` N-way k-shot episodes with `queries` queries per class
      (Matching Networks);
    - `images`: `batch_size` labelled drawings of the training classes (the classifier baseline);
    - `sequences`: `episodes_per_step` streams of `way` classes x `instances` drawings in
      random order with labels 0..way-1 assigned at random (MANN).
    Evaluation always uses the pinned test episodes of `eval_settings` (or pinned test
    streams for `sequences`), the same for every model, seed and arm.
    """

    name = "omniglot"

    def __init__(
        self,
        root: str = "data",
        mirror: str | None = None,
        download: bool = True,
        image_size: int = 28,
        split: str = "vinyals_1200",
        rotations: bool = True,
        protocol: str = "episodes",
        way: int = 5,
        shot: int = 1,
        queries: int = 5,
        episodes_per_step: int = 1,
        batch_size: int = 64,
        instances: int = 10,
        steps: int = 1000,
        seed: int = 0,
        eval_settings: Sequence[str] = ("5w1s", "5w5s", "20w1s", "20w5s"),
        eval_episodes: int = 1000,
        eval_queries: int = 5,
        eval_seed: int = EVAL_SEED,
        eval_batch: int = 250,
    ):
        super().__init__()
        if protocol not in ("episodes", "images", "sequences"):
            raise ValueError(f"protocol {protocol!r}: use episodes, images or sequences")
        self.root, self.mirror, self.download = root, mirror, download
        self.image_size, self.split, self.rotations = image_size, split, rotations
        self.protocol = protocol
        self.way, self.shot, self.queries = way, shot, queries
        self.episodes_per_step, self.batch_size, self.instances = (
            episodes_per_step,
            batch_size,
            instances,
        )
        self.steps, self.seed = steps, seed
        self.eval_settings = list(eval_settings)
        self.eval_episodes, self.eval_queries = eval_episodes, eval_queries
        self.eval_seed, self.eval_batch = eval_seed, eval_batch
        self.train_images: torch.Tensor | None = None  # [classes, 20, S, S] uint8
        self.test_images: torch.Tensor | None = None
        self.pinned: dict[str, dict[str, torch.Tensor]] = {}
        self.pinned_sha256: dict[str, str] = {}
        self.manifest: dict[str, Any] = {}
        self.source: dict[str, Any] = {}
        self.load_seconds = 0.0

    @property
    def n_train_classes(self) -> int:
        return len(self.train_images)

    def setup(self, stage: str | None = None) -> None:
        if self.train_images is not None:
            return
        t0 = time.perf_counter()
        images, self.source = omniglot_tensor(
            self.root, self.image_size, self.mirror, self.download
        )
        self.manifest = split_manifest(self.split)
        top = max(self.manifest["train"] + self.manifest["test"])
        if top > len(images):
            raise ValueError(
                f"split {self.split!r} needs {top} characters; the data has {len(images)}"
            )
        train = images[torch.tensor(self.manifest["train"]) - 1]
        self.test_images = images[torch.tensor(self.manifest["test"]) - 1]
        self.train_images = with_rotations(train) if self.rotations else train
        n_test = len(self.test_images)
        if self.protocol == "sequences":
            name = f"{self.way}c{self.instances}i"
            index = pinned_sequences(
                n_test, self.way, self.instances, self.eval_episodes, self.eval_seed
            )
            self.pinned = {name: index}
            queries = 0
        else:
            queries = self.eval_queries
            self.pinned = {
                s: pinned_episodes(
                    n_test, *parse_setting(s), queries, self.eval_episodes, self.eval_seed
                )
                for s in self.eval_settings
            }
        if self.eval_seed == EVAL_SEED:
            self.pinned_sha256 = {
                n: check_pinned(n_test, n, queries, i) for n, i in self.pinned.items()
            }
        else:
            self.pinned_sha256 = {n: index_sha256(i) for n, i in self.pinned.items()}
        self.load_seconds = time.perf_counter() - t0

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _start_step(self):
        return start_at_global_step(getattr(self, "trainer", None))

    def train_dataloader(self):
        dev = self._device()
        images = self.train_images.to(dev)
        if self.protocol == "images":
            flat = images.reshape(-1, 1, *images.shape[-2:])
            labels = torch.arange(len(images), device=dev).repeat_interleave(images.shape[1])
            return TrainStream(
                (flat, labels),
                self.batch_size,
                self.steps,
                self.seed,
                start_step=self._start_step(),
            )
        if self.protocol == "episodes":

            def build(g: torch.Generator):
                return episode_batch(
                    images, self.way, self.shot, self.queries, self.episodes_per_step, g
                )

        else:

            def build(g: torch.Generator):
                return sequence_batch(images, self.way, self.instances, self.episodes_per_step, g)

        return GeneratedSteps(build, self.steps, self.seed, start_step=self._start_step())

    def val_dataloader(self):
        dev = self._device()
        test = self.test_images.to(dev)
        if self.protocol == "sequences":
            ((name, index),) = self.pinned.items()
            return PinnedSequences(test, index, self.eval_batch, name)
        episodes = {
            name: {k: v.to(dev) for k, v in idx.items()} for name, idx in self.pinned.items()
        }
        return PinnedEpisodes(test, episodes)

    def provenance(self) -> dict:
        return {
            "dataset": "omniglot",
            "source": "torchvision.datasets.Omniglot (OmniglotFolders: md5 of the zips not checked)",
            "checksums": self.source.get("mirror_checksums", {}),
            "files": self.source.get("files", {}),  # the decoded cache read, verified
            "image_size": self.image_size,
            "split": self.split,
            "split_sha256": self.manifest.get("sha256"),
            "split_note": self.manifest.get("note"),
            "rotations": self.rotations,
            "n_train_classes": len(self.train_images) if self.train_images is not None else None,
            "n_test_classes": len(self.test_images) if self.test_images is not None else None,
            "protocol": self.protocol,
            "pinned_episodes_sha256": self.pinned_sha256,
            "eval_episodes": self.eval_episodes,
            "eval_queries": self.eval_queries if self.protocol != "sequences" else None,
            "eval_seed": self.eval_seed,
            "load_s": self.load_seconds,
            "cache_hit": self.source.get("cache_hit"),
        }
