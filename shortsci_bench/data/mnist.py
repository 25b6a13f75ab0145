"""MNIST through `torchvision.datasets.MNIST`, held as tensors and batched in memory."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
from torchvision.datasets import MNIST

from shortsci_bench.data import mirror as mirror_mod
from shortsci_bench.data import verify as unpacked_files
from shortsci_bench.data.batches import EvalBatches, TrainStream, sharded_eval, train_stream
from shortsci_bench.data.errors import DatasetMissingError, host_reachable
from shortsci_bench.data.verify import mnist_files

MNIST_HOST = "ossci-datasets.s3.amazonaws.com"  # torchvision's first mirror
MNIST_FILES = "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"


def load_mnist(
    root: str | Path, mirror: str | Path | None = None, download: bool = True
) -> tuple[MNIST, MNIST]:
    """Return torchvision's MNIST train and test sets, preparing them from the mirror
    or downloading as needed; raise DatasetMissingError (fast) when neither works."""
    root = Path(root)
    if all(p.is_file() for p in mnist_files(root)):
        unpacked_files.check("mnist", root, mnist_files(root))  # before a damaged file loads
        try:
            return MNIST(root, train=True, download=False), MNIST(root, train=False, download=False)
        except RuntimeError:
            pass
    mirror_path = Path(mirror) if mirror else mirror_mod.default_mirror()
    if mirror_path is not None and (mirror_path / "mnist").is_dir():
        mirror_mod.prepare("mnist", root, mirror_path)  # unpacks missing files again
        unpacked_files.check("mnist", root, mnist_files(root))
        return MNIST(root, train=True), MNIST(root, train=False)
    where = root / "MNIST" / "raw"
    if not download:
        raise DatasetMissingError("MNIST", where, MNIST_FILES, "(dataset.download=false)")
    if not host_reachable(MNIST_HOST):
        raise DatasetMissingError(
            "MNIST", where, MNIST_FILES, f"(no network: {MNIST_HOST} unreachable)"
        )
    try:
        return MNIST(root, train=True, download=True), MNIST(root, train=False, download=True)
    except Exception as exc:  # network errors come in many types; report them in one message
        raise DatasetMissingError(
            "MNIST", where, MNIST_FILES, f"(download failed: {exc})"
        ) from None


def to_tensors(ds: MNIST, binarize: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    x = ds.data.reshape(len(ds), -1).float().div_(255.0)
    if binarize:
        x = (x > 0.5).float()
    return x, ds.targets.clone()


class MNISTDataModule(L.LightningDataModule):
    """Flattened MNIST images in [0, 1] (or binarized), as in-memory tensors.

    The test set doubles as the evaluation set during training, as in the papers'
    "test accuracy vs steps" curves; nothing is tuned on it.
    """

    name = "mnist"
    eval_split = "test"  # scored during training; a subclass with a validation split overrides it

    def __init__(
        self,
        root: str = "data",
        mirror: str | None = None,
        download: bool = True,
        batch_size: int = 60,
        eval_batch_size: int = 10_000,
        steps: int = 1000,
        seed: int = 0,
        binarize: bool = False,
        train_subset: int | None = None,
        eval_subset: int | None = None,
    ):
        super().__init__()
        self.root, self.mirror, self.download = root, mirror, download
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.steps, self.seed, self.binarize = steps, seed, binarize
        self.train_subset, self.eval_subset = train_subset, eval_subset
        self.train: tuple[torch.Tensor, torch.Tensor] | None = None
        self.test: tuple[torch.Tensor, torch.Tensor] | None = None
        self.load_seconds = 0.0

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        t0 = time.perf_counter()
        train, test = load_mnist(self.root, self.mirror, self.download)
        self.train, self.test = to_tensors(train, self.binarize), to_tensors(test, self.binarize)
        if self.train_subset:
            self.train = tuple(t[: self.train_subset] for t in self.train)
        if self.eval_subset:
            self.test = tuple(t[: self.eval_subset] for t in self.test)
        self.load_seconds = time.perf_counter() - t0

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _on_device(self, split: str) -> tuple[torch.Tensor, ...]:
        return tuple(t.to(self._device()) for t in getattr(self, split))

    def train_dataloader(self) -> TrainStream:
        return train_stream(self, self._on_device("train"))

    def val_dataloader(self) -> EvalBatches:
        return sharded_eval(self, self._on_device(self.eval_split))

    def provenance(self) -> dict:
        return {
            "dataset": "mnist",
            "source": "torchvision.datasets.MNIST",
            "checksums": mirror_mod.checksums("mnist", Path(self.root)),
            # sha256 of the idx files read, verified at the start of this run
            "files": {
                rel: sha
                for rel, sha in unpacked_files.recorded("mnist", Path(self.root)).items()
                if rel.startswith("MNIST/raw/")
            },
            "n_train": len(self.train[0]) if self.train else None,
            "n_eval": len(self.test[0]) if self.test else None,
            "binarize": self.binarize,
        }
