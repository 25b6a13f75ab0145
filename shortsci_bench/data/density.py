"""Images for density estimation, as integer pixels: binarized MNIST (pinned), 8-bit MNIST and
CIFAR-10, each with the standard splits.

**Binarized MNIST.** The likelihood papers (PixelRNN, DRAW, Real NVP's predecessors) report
NLL in nats on binarized MNIST, split 50,000 train / 10,000 validation / 10,000 test (the
first 50,000 of MNIST's training set, its last 10,000, and its test set). Their usual file
is Larochelle & Murray's *static* binarization, which is not in our data mirror. We build a
stochastic binarization of the real MNIST the harness loads, once and pinned: pixel j of
image i is 1 when u_ij < x_ij / 255, with u drawn by numpy's PCG64 generator seeded by
`BINARIZATION_SEED`, over the 70,000 images in file order (train, then test). The result
is fixed (a static dataset: the same bits in every run and epoch), and its sha256 per split
is pinned in `manifests/binarized_mnist.json` with the sha256 of the idx files it came
from. A run refuses a binarization whose source files match the manifest but whose bits do
not (the generator changed); every record's provenance carries the binarization's name,
seed and checksums. Numbers on it are comparable to, not identical with, the papers'
(another draw of the same Bernoulli variables).

**8-bit MNIST** (for flows): the same split, pixels 0..255. **CIFAR-10**: 50,000 / 10,000 as
the harness loads it (`shortsci_bench.data.cifar10`, its `source` named in provenance).

Batches are (x,) with x a float tensor of integer values: {0, 1} for binary data, 0..255
otherwise, shape (N, C, H, W). Example::

    dm = DensityMNISTDataModule(pixels="binary", batch_size=16, steps=100)
    dm.setup()
    (x,) = next(iter(dm.train_dataloader()))   # float32 (16, 1, 28, 28) in {0, 1}
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from shortsci_bench.data import verify as unpacked_files
from shortsci_bench.data.batches import EvalBatches, TrainStream, sharded_eval, train_stream

BINARIZATION = "stochastic-pcg64"  # the name every record carries
BINARIZATION_SEED = 20160125  # PixelRNN's arXiv date; any fixed number would do
MANIFEST = Path(__file__).with_name("manifests") / "binarized_mnist.json"
N_TRAIN, N_VALID = 50_000, 10_000  # of MNIST's 60,000 training images; test is its 10,000


def binarize(images: np.ndarray, seed: int = BINARIZATION_SEED) -> np.ndarray:
    """uint8 images (N, ...) in 0..255 -> uint8 bits: 1 where u < x / 255, u ~ U[0, 1) from
    PCG64(seed), drawn in row-major order over the whole array."""
    u = np.random.Generator(np.random.PCG64(seed)).random(images.shape, dtype=np.float64)
    return (u < images.astype(np.float64) / 255.0).astype(np.uint8)


def sha256_of(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def split_mnist(train: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
    """The standard 50k / 10k / 10k split: train = first 50,000, valid = last 10,000 of
    MNIST's training set, test = its test set."""
    return {"train": train[:N_TRAIN], "valid": train[N_TRAIN:], "test": test}


def binarized_splits(train: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
    """Binarize all 70,000 images in file order (train then test), then split."""
    bits = binarize(np.concatenate([train, test]))
    return split_mnist(bits[: len(train)], bits[len(train) :])


def manifest_entry(source_files: dict[str, str], splits: dict[str, np.ndarray]) -> dict:
    return {
        "name": BINARIZATION,
        "seed": BINARIZATION_SEED,
        "rule": "x_bin = [u < x / 255], u ~ numpy PCG64(seed).random over train then test images",
        "source_files": dict(sorted(source_files.items())),
        "splits": {k: {"n": int(len(v)), "sha256": sha256_of(v)} for k, v in splits.items()},
    }


def check_binarization(source_files: dict[str, str], splits: dict[str, np.ndarray]) -> dict:
    """Provenance of a binarization: its manifest entry plus `pinned` (True when the source
    files and bits match `manifests/binarized_mnist.json`, False for other source files,
    e.g. the tests' tiny fake MNIST). Raises when the source matches and the bits do not."""
    entry = manifest_entry(source_files, splits)
    pinned = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else None
    if pinned is None or pinned["source_files"] != entry["source_files"]:
        return {**entry, "pinned": False}
    if pinned["splits"] != entry["splits"]:
        raise RuntimeError(
            f"binarized MNIST differs from its pinned manifest {MANIFEST} although the MNIST "
            "files match: the binarization's generator changed; records would not be comparable"
        )
    return {**entry, "pinned": True}


class _DensityDataModule(L.LightningDataModule):
    """Shared plumbing: `self.splits` {train, valid, test} of float tensors (N, C, H, W),
    batched as (x,) by step; `valid` is scored during training, `test` once at the end."""

    eval_split = "valid"

    def __init__(self, batch_size: int, eval_batch_size: int, steps: int, seed: int,
                 train_subset: int | None = None, eval_subset: int | None = None):  # fmt: skip
        super().__init__()
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.steps, self.seed = steps, seed
        self.train_subset, self.eval_subset = train_subset, eval_subset
        self.splits: dict[str, torch.Tensor] | None = None
        self.info: dict[str, Any] = {}
        self.load_seconds = 0.0

    def load(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        t0 = time.perf_counter()
        splits = self.load()
        if self.train_subset:
            splits["train"] = splits["train"][: self.train_subset]
        if self.eval_subset:  # the first N of valid and of test
            splits = {k: v if k == "train" else v[: self.eval_subset] for k, v in splits.items()}
        self.splits = splits
        self.load_seconds = time.perf_counter() - t0

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.splits["train"].shape[1:])

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _on_device(self, split: str) -> tuple[torch.Tensor]:
        return (self.splits[split].to(self._device()),)

    def train_dataloader(self) -> TrainStream:
        return train_stream(self, self._on_device("train"))

    def val_dataloader(self) -> EvalBatches:
        return sharded_eval(self, self._on_device(self.eval_split))

    def test_dataloader(self) -> EvalBatches:
        return EvalBatches(self._on_device("test"), self.eval_batch_size)

    def provenance(self) -> dict:
        sizes = {k: int(len(v)) for k, v in (self.splits or {}).items()}
        return {**self.info, "n_train": sizes.get("train"), "n_valid": sizes.get("valid"),
                "n_eval": sizes.get("valid"), "n_test": sizes.get("test")}  # fmt: skip


class DensityMNISTDataModule(_DensityDataModule):
    """MNIST split 50k / 10k / 10k, as (N, 1, 28, 28) floats: `pixels="binary"` for the
    pinned binarization (values 0/1), `"uint8"` for the grey levels (0..255)."""

    def __init__(self, root: str = "data", mirror: str | None = None, download: bool = True,
                 pixels: str = "binary", batch_size: int = 16, eval_batch_size: int = 1000,
                 steps: int = 1000, seed: int = 0, train_subset: int | None = None,
                 eval_subset: int | None = None):  # fmt: skip
        super().__init__(batch_size, eval_batch_size, steps, seed, train_subset, eval_subset)
        if pixels not in ("binary", "uint8"):
            raise ValueError(f"dataset.pixels={pixels!r}: use binary or uint8")
        self.root, self.mirror, self.download, self.pixels = root, mirror, download, pixels

    def load(self) -> dict[str, torch.Tensor]:
        from shortsci_bench.data.mnist import load_mnist

        train, test = load_mnist(self.root, self.mirror, self.download)
        train_u8, test_u8 = train.data.numpy(), test.data.numpy()
        files = {
            rel: sha
            for rel, sha in unpacked_files.recorded("mnist", Path(self.root)).items()
            if rel.startswith("MNIST/raw/") and "images" in rel
        }
        self.info = {"dataset": f"mnist_{self.pixels}", "source": "torchvision.datasets.MNIST",
                     "files": files, "split": "train 0-49999 / valid 50000-59999 / test"}  # fmt: skip
        if self.pixels == "binary":
            splits = binarized_splits(train_u8, test_u8)
            self.info["binarization"] = check_binarization(files, splits)
        else:
            splits = split_mnist(train_u8, test_u8)
        return {k: torch.from_numpy(v.copy()).float().unsqueeze(1) for k, v in splits.items()}


class DensityCIFAR10DataModule(_DensityDataModule):
    """CIFAR-10 as (N, 3, 32, 32) floats 0..255: train 50,000 (`valid` is the test set, as
    the papers report test bits/dim and tune nothing on it here), test 10,000. `flip`:
    random horizontal flips of training batches (Real NVP's augmentation)."""

    def __init__(self, root: str = "data", mirror: str | None = None, download: bool = True,
                 source: str = "jpeg_full", flip: bool = False, batch_size: int = 64,
                 eval_batch_size: int = 500, steps: int = 1000, seed: int = 0,
                 train_subset: int | None = None, eval_subset: int | None = None):  # fmt: skip
        super().__init__(batch_size, eval_batch_size, steps, seed, train_subset, eval_subset)
        self.root, self.mirror, self.download = root, mirror, download
        self.source, self.flip = source, flip

    def load(self) -> dict[str, torch.Tensor]:
        from shortsci_bench.data.cifar10 import load_cifar10

        data = load_cifar10(self.source, self.root, self.mirror, self.download)
        self.info = {"dataset": "cifar10_uint8", **data.provenance, "flip": self.flip}
        test = data.test_images.float()
        return {"train": data.train_images.float(), "valid": test, "test": test}

    def train_dataloader(self) -> TrainStream:
        if not self.flip:
            return super().train_dataloader()

        def flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            mask = torch.rand(len(x), generator=g) < 0.5
            return torch.where(mask.to(x.device)[:, None, None, None], x.flip(-1), x)

        return train_stream(self, self._on_device("train"), transform=flip)
