"""CIFAR-10 (Krizhevsky 2009) through `torchvision.datasets.CIFAR10`, held as uint8 tensors.

Three sources (`dataset.source`), each named in every run record's provenance:

- `torchvision`: the original python batches in `<root>/cifar-10-batches-py`, read and
  md5-checked by the stock class (downloaded where there is internet);
- `subset_lossless`: train images 0-3,999 and test images 0-999, pixel-exact, rebuilt from
  the mirror's ConvNetJS PNGs as `cifar-10-batches-py` pickles in the original format and
  read by `CIFAR10Pickles`, a subclass that relaxes only the md5 check;
- `jpeg_full`: all 50,000 + 10,000 images from the mirror's JPEG (quality 75) copy:
  slightly lossy (mean absolute error 3-9/255 per pixel), decoded once and cached as a
  uint8 tensor file with its sha256.

`python -m shortsci_bench.data.mirror --only cifar10` builds the last two. Batches are
cropped, flipped, normalised and (optionally) ZCA-whitened as whole tensors on the
training device (`shortsci_bench.data.augment`).

Example::

    dm = CIFAR10DataModule(source="subset_lossless", batch_size=128, steps=100)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))   # float32 (128, 3, 32, 32), int64 (128,)
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import PIL
import torch
from filelock import FileLock
from PIL import Image
from torchvision.datasets import CIFAR10

from shortsci_bench.data import mirror as mirror_mod
from shortsci_bench.data import verify as unpacked_files
from shortsci_bench.data.augment import ImageNormalizer, pad_crop_flip
from shortsci_bench.data.batches import EvalBatches, TrainStream, sharded_eval, train_stream
from shortsci_bench.data.errors import DatasetMissingError, host_reachable

CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
SOURCES = {
    "torchvision": "original CIFAR-10 python batches (torchvision.datasets.CIFAR10, md5-checked)",
    "subset_lossless": "pixel-exact subset from the ConvNetJS PNGs: train 0-3999, test 0-999",
    "jpeg_full": "full CIFAR-10 decoded from JPEG quality 75 (lossy: MAE 3-9/255 per pixel)",
}
CIFAR_HOST = "www.cs.toronto.edu"
SUBSET_DIR = "cifar10-subset-lossless"  # holds its own cifar-10-batches-py/
JPEG_DIR = "cifar10-jpeg-q75"
JPEG_CACHE = "cifar10_jpeg_q75_uint8.pt"
JPEG_TAR = "cifar10-jpeg-q75.tar.gz"
CONVNETJS_ROWS = 1000  # images per ConvNetJS PNG; batch b holds images b*1000 + row
CONVNETJS_TEST_BATCH = 50  # cifar10_batch_50.png: test images; labels.js index 50,000 on


# --- the pickled batch format of cifar-10-python.tar.gz ----------------------------
def write_cifar_batch(
    path: Path, images: np.ndarray, labels: list[int], batch_label: str, filenames: list[str]
) -> None:
    """One batch file as in the original archive: a pickled dict with `batch_label`,
    `labels` (ints), `data` (uint8, N x 3072, each row the R, G, B planes of a 32x32
    image, row-major) and `filenames`."""
    entry = {
        "batch_label": batch_label,
        "labels": [int(v) for v in labels],
        "data": np.ascontiguousarray(images.reshape(len(images), 3072), dtype=np.uint8),
        "filenames": filenames,
    }
    _atomic_write(path, pickle.dumps(entry, protocol=2))


def write_cifar_meta(path: Path) -> None:
    meta = {"num_cases_per_batch": 10000, "label_names": list(CLASSES), "num_vis": 3072}
    _atomic_write(path, pickle.dumps(meta, protocol=2))


def _tmp_path(path: Path) -> Path:
    # one temporary name per process: parallel runs may prepare the same root at once
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def _atomic_write(path: Path, blob: bytes) -> None:
    tmp = _tmp_path(path)
    tmp.write_bytes(blob)
    os.replace(tmp, path)


class CIFAR10Pickles(CIFAR10):
    """Stock `torchvision.datasets.CIFAR10` parsing for batches rebuilt from the mirror.

    Only the md5 check is relaxed (the rebuilt files cannot match the originals' md5),
    and the file list is the one batch the lossless subset fills: `data_batch_1` holds
    train images 0-3,999, the first 4,000 of the original `data_batch_1`.
    """

    train_list = [["data_batch_1", None]]
    test_list = [["test_batch", None]]
    meta = {**CIFAR10.meta, "md5": None}

    def download(self) -> None:  # the subset exists only in the mirror
        raise RuntimeError("the lossless CIFAR-10 subset is built from the mirror, not downloaded")


# --- mirror -> data root -------------------------------------------------------------
def read_convnetjs_labels(path: Path) -> np.ndarray:
    """`var labels=[6, 9, ...]` -> int64 array (train 0-49,999, then test 0-999)."""
    text = path.read_text()
    body = text[text.index("[") + 1 : text.rindex("]")]
    return np.array([int(v) for v in re.findall(r"-?\d+", body)], dtype=np.int64)


def read_convnetjs_png(path: Path) -> np.ndarray:
    """A ConvNetJS batch PNG -> uint8 (N, 3, 32, 32): row i of the PNG is image i, and
    pixel k of the row is image pixel (k // 32, k % 32)."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))  # (N, 1024, 3)
    return rgb.reshape(len(rgb), 32, 32, 3).transpose(0, 3, 1, 2).copy()


def build_lossless_subset(src: Path, dest: Path) -> list[Path]:
    """ConvNetJS PNGs + labels.js -> `dest/cifar-10-batches-py/{data_batch_1,test_batch,
    batches.meta}` in the original format (train batches in index order, then test)."""
    labels = read_convnetjs_labels(src / "cifar10_labels.js")
    train_imgs, train_idx, test_imgs, test_idx = [], [], [], []
    for png in sorted(src.glob("cifar10_batch_*.png"), key=lambda p: int(p.stem.split("_")[-1])):
        b = int(png.stem.split("_")[-1])
        imgs = read_convnetjs_png(png)
        idx = b * CONVNETJS_ROWS + np.arange(len(imgs))
        if b == CONVNETJS_TEST_BATCH:
            test_imgs.append(imgs)
            test_idx.append(idx - CONVNETJS_TEST_BATCH * CONVNETJS_ROWS)
        else:
            train_imgs.append(imgs)
            train_idx.append(idx)
    out = dest / CIFAR10.base_folder
    out.mkdir(parents=True, exist_ok=True)
    tr_idx, te_idx = np.concatenate(train_idx), np.concatenate(test_idx)
    if not (np.diff(tr_idx) == 1).all() or tr_idx[0] != 0:
        raise ValueError(f"{src}: train PNGs do not cover images 0..N-1 without gaps")
    write_cifar_batch(
        out / "data_batch_1",
        np.concatenate(train_imgs),
        labels[tr_idx].tolist(),
        f"training images 0-{tr_idx[-1]} (lossless subset of batch 1 of 5)",
        [f"cifar10_train_{i:05d}.png" for i in tr_idx],
    )
    write_cifar_batch(
        out / "test_batch",
        np.concatenate(test_imgs),
        labels[CONVNETJS_TEST_BATCH * CONVNETJS_ROWS + te_idx].tolist(),
        f"testing images 0-{te_idx[-1]} (lossless subset of batch 1 of 1)",
        [f"cifar10_test_{i:05d}.png" for i in te_idx],
    )
    write_cifar_meta(out / "batches.meta")
    return [out / "data_batch_1", out / "test_batch", out / "batches.meta"]


def decode_jpeg_tar(tar_path: Path, labels: np.ndarray) -> dict[str, torch.Tensor]:
    """Decode `train/<class>/NNNN.jpg`, `test/<class>/NNNN.jpg` into uint8 tensors in the
    original order where it is known.

    Within a class the k-th file is the k-th image of that class in the original batches,
    so the ConvNetJS labels (all 50,000 train labels, test labels 0-999) restore the
    original train order exactly and test images 0-999 exactly. Test images from 1,000 on
    follow in a fixed order (each class's remaining images, classes taken in turn), not
    the original one, which the JPEG copy does not record.
    """
    files: dict[tuple[str, int], list[tuple[str, bytes]]] = {}
    with tarfile.open(tar_path, "r:*") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 3 or not parts[-1].endswith(".jpg"):
                continue
            split, cls = parts[-3], parts[-2]
            blob = tar.extractfile(member).read()
            files.setdefault((split, CLASSES.index(cls)), []).append((parts[-1], blob))
    out: dict[str, torch.Tensor] = {}
    for split in ("train", "test"):
        per_class = []
        for c in range(len(CLASSES)):
            entries = sorted(files.get((split, c), []))
            imgs = [_decode_jpeg(blob) for _, blob in entries]
            per_class.append(
                torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()
                if imgs
                else torch.empty(0, 3, 32, 32, dtype=torch.uint8)
            )
        counts = np.array([len(t) for t in per_class])
        if split == "train":
            known = labels[: counts.sum()]
            if not np.array_equal(np.bincount(known, minlength=len(CLASSES)), counts):
                raise ValueError(f"{tar_path}: train class counts differ from labels.js")
        else:
            offset = CONVNETJS_TEST_BATCH * CONVNETJS_ROWS
            known = labels[offset : offset + counts.sum()]
            # keep the longest prefix of test labels that the files can satisfy
            ok = np.cumsum(np.eye(len(CLASSES), dtype=np.int64)[known], axis=0) <= counts
            known = known[: int(np.argmin(ok.all(1))) if not ok.all() else len(known)]
        order = _order_from_labels(known, counts)
        images = torch.cat(per_class)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        out[f"{split}_images"] = images[torch.from_numpy(starts[order[:, 0]] + order[:, 1])]
        out[f"{split}_labels"] = torch.from_numpy(order[:, 0].astype(np.int64))
    return out


def _decode_jpeg(blob: bytes) -> np.ndarray:
    # Pillow and torchvision.io.decode_jpeg (deprecated in 0.29) give identical pixels here.
    with Image.open(io.BytesIO(blob)) as im:
        return np.asarray(im.convert("RGB"))


def _order_from_labels(known: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(class, rank within class) for each position: first the positions whose labels are
    known (rank = how many of that class came before), then each class's remaining
    images, classes in turn."""
    ranks = np.zeros(len(counts), dtype=np.int64)
    rows = []
    for c in known:
        rows.append((c, ranks[c]))
        ranks[c] += 1
    rest = sorted((r, c) for c in range(len(counts)) for r in range(ranks[c], counts[c]))
    rows += [(c, r) for r, c in rest]
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


def build_jpeg_cache(tar_path: Path, labels_js: Path, dest: Path) -> Path:
    """Decode the JPEG tar once into `dest/cifar10_jpeg_q75_uint8.pt` (+ `.sha256`)."""
    dest.mkdir(parents=True, exist_ok=True)
    tensors = decode_jpeg_tar(tar_path, read_convnetjs_labels(labels_js))
    target = dest / JPEG_CACHE
    tmp = _tmp_path(target)
    torch.save(tensors, tmp)
    digest = mirror_mod.sha256(tmp)
    # the checksum first: a cache file that exists always has its checksum beside it
    _atomic_write(dest / (JPEG_CACHE + ".sha256"), f"{digest}  {JPEG_CACHE}\n".encode())
    os.replace(tmp, target)
    return target


@mirror_mod.unpacker("cifar10")
def unpack_cifar10(mirror: Path, root: Path) -> list[Path]:
    """Mirror `cifar10/` -> `<root>/cifar10-subset-lossless/cifar-10-batches-py/` (pickles)
    and `<root>/cifar10-jpeg-q75/cifar10_jpeg_q75_uint8.pt` (decoded JPEGs)."""
    src = mirror / "cifar10"
    out: list[Path] = []
    if (src / "convnetjs" / "cifar10_labels.js").exists():
        out += build_lossless_subset(src / "convnetjs", root / SUBSET_DIR)
        if (src / JPEG_TAR).exists():
            out.append(
                build_jpeg_cache(
                    src / JPEG_TAR, src / "convnetjs" / "cifar10_labels.js", root / JPEG_DIR
                )
            )
    return out


# --- loading ---------------------------------------------------------------------------
@dataclass
class CIFAR10Tensors:
    train_images: torch.Tensor  # uint8 (N, 3, 32, 32)
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor
    test_labels: torch.Tensor
    provenance: dict[str, Any] = field(default_factory=dict)


def _from_dataset(ds: CIFAR10) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # HWC -> CHW
    return images, torch.as_tensor(ds.targets, dtype=torch.int64)


def _missing(source: str, where: Path, expected: str, extra: str) -> DatasetMissingError:
    return DatasetMissingError(f"CIFAR-10 ({source})", where, expected, extra)


def _prepare_from_mirror(root: Path, mirror: str | Path | None, source: str, where: Path):
    mirror_path = Path(mirror) if mirror else mirror_mod.default_mirror()
    if mirror_path is None or not (mirror_path / "cifar10").is_dir():
        raise _missing(
            source,
            where,
            "files built from the mirror's cifar10/ folder",
            f"(no mirror: looked for {mirror_path}/cifar10; source `{source}` exists only in "
            "the mirror: use `dataset.source=torchvision` to download the original)",
        )
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".cifar10.lock")):  # parallel runs unpack once, in turn
        mirror_mod.prepare("cifar10", root, mirror_path)


def load_cifar10(
    source: str, root: str | Path, mirror: str | Path | None = None, download: bool = True
) -> CIFAR10Tensors:
    """Train and test images of `source` (see `SOURCES`) as uint8 tensors; prepares them
    from the mirror or downloads as needed, else raises DatasetMissingError (fast)."""
    if source not in SOURCES:
        raise ValueError(f"dataset.source={source!r}: choose one of {', '.join(SOURCES)}")
    root = Path(root)
    prov: dict[str, Any] = {"source": source, "source_description": SOURCES[source]}
    if source == "torchvision":
        where = root / CIFAR10.base_folder
        try:
            train, test = CIFAR10(root, train=True), CIFAR10(root, train=False)
        except RuntimeError:
            if not download:
                raise _missing(
                    source, where, "data_batch_1..5, test_batch", "(dataset.download=false)"
                ) from None
            if not host_reachable(CIFAR_HOST):
                raise _missing(
                    source,
                    where,
                    "data_batch_1..5, test_batch",
                    f"(no network: {CIFAR_HOST} unreachable)",
                ) from None
            try:
                train = CIFAR10(root, train=True, download=True)
                test = CIFAR10(root, train=False)
            except Exception as exc:  # network errors come in many types
                raise _missing(
                    source, where, "data_batch_1..5", f"(download failed: {exc})"
                ) from None
        prov["checksums"] = {name: md5 for name, md5 in CIFAR10.train_list + CIFAR10.test_list}
        prov["checksum_kind"] = "md5, verified by torchvision"
        return CIFAR10Tensors(*_from_dataset(train), *_from_dataset(test), provenance=prov)

    if source == "subset_lossless":
        base = root / SUBSET_DIR
        pickles = [base / CIFAR10.base_folder / n for n in ("data_batch_1", "test_batch")]
        if all(p.is_file() for p in pickles):  # verified before unpickling
            unpacked_files.check("cifar10", root, [*pickles, pickles[0].with_name("batches.meta")])
        try:
            train, test = CIFAR10Pickles(base, train=True), CIFAR10Pickles(base, train=False)
        except RuntimeError:
            _prepare_from_mirror(root, mirror, source, base / CIFAR10.base_folder)
            train, test = CIFAR10Pickles(base, train=True), CIFAR10Pickles(base, train=False)
        prov["checksums"] = mirror_mod.checksums("cifar10", root)
        prov["checksum_kind"] = "sha256 of the mirror files the batches were built from"
        prov["files"] = unpacked_files.check("cifar10", root, pickles)
        return CIFAR10Tensors(*_from_dataset(train), *_from_dataset(test), provenance=prov)

    cache = root / JPEG_DIR / JPEG_CACHE
    if not cache.exists():
        _prepare_from_mirror(root, mirror, source, cache)
        if not cache.exists():
            raise _missing(source, cache, JPEG_TAR, "(the mirror has no JPEG copy)")
    want = (cache.parent / (JPEG_CACHE + ".sha256")).read_text().split()[0]
    got = mirror_mod.sha256(cache)
    if got != want:
        raise ValueError(
            f"{cache}: sha256 {got[:12]}... differs from the one written with it ({want[:12]}...); "
            f"delete {cache.parent} and run again to decode the JPEGs afresh"
        )
    t = torch.load(cache, weights_only=True)
    prov["checksums"] = mirror_mod.checksums("cifar10", root)
    prov["checksum_kind"] = "sha256 of the mirror files the cache was decoded from"
    prov["cache_sha256"] = got
    prov["decoder"] = f"Pillow {PIL.__version__}"
    prov["lossy"] = True
    return CIFAR10Tensors(
        t["train_images"], t["train_labels"], t["test_images"], t["test_labels"], prov
    )


# --- the datamodule ----------------------------------------------------------------------
class NormalizedBatches:
    """Fixed-order evaluation batches (`EvalBatches`), normalised batch by batch."""

    def __init__(self, batches: EvalBatches, normalize: ImageNormalizer):
        self.batches, self.normalize = batches, normalize

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        for x, *rest in self.batches:
            yield (self.normalize(x), *rest)


class CIFAR10DataModule(L.LightningDataModule):
    """CIFAR-10 as uint8 tensors on the training device, augmented per batch.

    Training batches come from a `TrainStream` (a function of seed and step); its
    transform crops and flips (`augment`), then normalises (`normalize`: `per_channel`
    standardisation, or `scaled` = (x - 127.5) / 128) and optionally ZCA-whitens (`zca`).
    The test set doubles as the evaluation set, as in the papers' curves; nothing is
    tuned on it. `eval_subset` keeps its first N images (the same images in every source
    for N <= 1,000).
    """

    name = "cifar10"

    def __init__(
        self,
        root: str = "data",
        mirror: str | None = None,
        download: bool = True,
        source: str = "jpeg_full",
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        steps: int = 1000,
        seed: int = 0,
        train_subset: int | None = None,
        eval_subset: int | None = None,
        augment: dict[str, Any] | None = None,
        normalize: str = "per_channel",
        zca: bool = False,
        zca_eps: float = 1e-5,
    ):
        super().__init__()
        if normalize not in ("per_channel", "scaled"):
            raise ValueError(f"dataset.normalize={normalize!r}: use per_channel or scaled")
        self.root, self.mirror, self.download, self.source = root, mirror, download, source
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.steps, self.seed = steps, seed
        self.train_subset, self.eval_subset = train_subset, eval_subset
        self.augment = dict(augment) if augment else None
        self.normalize, self.zca, self.zca_eps = normalize, zca, zca_eps
        self.data: CIFAR10Tensors | None = None
        self.normalizer: ImageNormalizer | None = None
        self.load_seconds = 0.0

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        t0 = time.perf_counter()
        data = load_cifar10(self.source, self.root, self.mirror, self.download)
        if self.train_subset:
            data.train_images = data.train_images[: self.train_subset]
            data.train_labels = data.train_labels[: self.train_subset]
        if self.eval_subset:
            data.test_images = data.test_images[: self.eval_subset]
            data.test_labels = data.test_labels[: self.eval_subset]
        self.data = data
        self.normalizer = self._fit_normalizer(data.train_images)
        self.load_seconds = time.perf_counter() - t0

    def _fit_normalizer(self, train: torch.Tensor) -> ImageNormalizer:
        if self.normalize == "per_channel":
            if self.zca:
                raise ValueError("dataset.zca=true needs dataset.normalize=scaled")
            return ImageNormalizer.per_channel(train)
        if not self.zca:
            return ImageNormalizer.scaled(train)
        # The ZCA fit costs about 20 s of one CPU core on 50,000 images: cache it, keyed
        # by the exact training pixels and the regulariser.
        key = hashlib.sha256(train.numpy().tobytes() + repr(self.zca_eps).encode()).hexdigest()
        path = Path(self.root) / ".cache" / f"cifar10-zca-{key[:16]}.pt"
        if path.exists():
            saved = torch.load(path, weights_only=True)
            norm = ImageNormalizer.scaled(train)
            norm.zca_mean, norm.zca_matrix = saved["mean"], saved["matrix"]
            return norm
        dev = self._device()
        norm = ImageNormalizer.scaled(train.to(dev), zca_eps=self.zca_eps).to("cpu")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_path(path)
        torch.save({"mean": norm.zca_mean, "matrix": norm.zca_matrix}, tmp)
        os.replace(tmp, path)
        return norm

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def train_transform(self, device: torch.device | str = "cpu"):
        """The per-batch transform `TrainStream` applies: uint8 batch, generator -> float."""
        norm = self.normalizer.to(device)
        augment = self.augment

        def transform(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            if augment:
                x = pad_crop_flip(
                    x,
                    generator,
                    pad=int(augment.get("pad", 4)),
                    flip=bool(augment.get("flip", True)),
                )
            return norm(x)

        return transform

    def train_dataloader(self) -> TrainStream:
        dev = self._device()
        train = (self.data.train_images.to(dev), self.data.train_labels.to(dev))
        return train_stream(self, train, transform=self.train_transform(dev))

    def val_dataloader(self) -> NormalizedBatches:
        dev = self._device()
        test = (self.data.test_images.to(dev), self.data.test_labels.to(dev))
        return NormalizedBatches(sharded_eval(self, test), self.normalizer.to(dev))

    def init_batch(self, n: int) -> torch.Tensor:
        """`n` training images drawn by the seed, normalised and not augmented: the batch
        for a data-dependent initialisation (Salimans & Kingma use 500)."""
        g = torch.Generator().manual_seed(self.seed)
        idx = torch.randperm(len(self.data.train_images), generator=g)[:n]
        dev = self._device()
        return self.normalizer.to(dev)(self.data.train_images[idx].to(dev))

    def provenance(self) -> dict:
        d = self.data
        return {
            "dataset": "cifar10",
            **(d.provenance if d else {"source": self.source}),
            "n_train": len(d.train_images) if d else None,
            "n_eval": len(d.test_images) if d else None,
            "augment": self.augment,
            "normalize": self.normalize,
            "zca": self.zca,
            # carried into the record's notes, so every table can label the lossy source
            "notes": [f"data: {SOURCES[self.source]} (dataset.source={self.source})"]
            if self.source == "jpeg_full"
            else [],
        }
