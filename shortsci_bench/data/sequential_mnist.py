"""Sequential and permuted MNIST: each image read one pixel per time step.

Cooijmans et al., "Recurrent Batch Normalization" (ICLR 2017), section 5.1, after Le,
Jaitly & Hinton (2015): 784 steps of one grey level each, in scan-line order or in one
fixed random order (pMNIST). As in the paper's code, the last 10,000 training images are
the validation set and MNIST's test set is read once at the end.

`downsample=k` averages k x k blocks first (28/k squared steps): a shorter sequence for
CPU budgets, labelled as such in the experiment's notes. The permutation is drawn from
`permutation_seed` for the sequence actually used and recorded by its SHA-256.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from shortsci_bench.data import mirror as mirror_mod
from shortsci_bench.data.batches import EvalBatches, TrainStream
from shortsci_bench.data.mnist import MNISTDataModule, load_mnist, to_tensors

SIDE = 28
PROBE_IMAGES = 1000


def pixel_sequences(
    images: torch.Tensor, downsample: int = 1, permutation: torch.Tensor | None = None
) -> torch.Tensor:
    """(n, 784) grey levels in [0, 1] -> (n, steps, 1) pixel sequences."""
    x = images.view(-1, 1, SIDE, SIDE)
    if downsample > 1:
        x = F.avg_pool2d(x, downsample)
    x = x.flatten(1)
    if permutation is not None:
        x = x[:, permutation]
    return x.unsqueeze(-1).contiguous()


def pixel_permutation(length: int, seed: int) -> torch.Tensor:
    """The fixed pMNIST order: a permutation of `length` pixels drawn from `seed`."""
    return torch.randperm(length, generator=torch.Generator().manual_seed(seed))


class SequentialMNISTDataModule(MNISTDataModule):
    """MNIST as (batch, steps, 1) pixel sequences: train (first 50,000 training images),
    validation (last 10,000; `val_dataloader`, during training) and test
    (`test_dataloader`, once at the end)."""

    name = "sequential_mnist"
    eval_split = "val"

    def __init__(
        self,
        root: str = "data",
        mirror: str | None = None,
        download: bool = True,
        batch_size: int = 100,
        eval_batch_size: int = 1000,
        steps: int = 1000,
        seed: int = 0,
        n_val: int = 10_000,
        downsample: int = 1,
        permuted: bool = False,
        permutation_seed: int = 0,
        train_subset: int | None = None,
        eval_subset: int | None = None,
    ):
        super().__init__(
            root, mirror, download, batch_size, eval_batch_size, steps, seed,
            False, train_subset, eval_subset,
        )  # fmt: skip
        if SIDE % downsample:
            raise ValueError(f"downsample={downsample} must divide {SIDE}")
        self.n_val, self.downsample = n_val, downsample
        self.permuted, self.permutation_seed = permuted, permutation_seed
        self.length = (SIDE // downsample) ** 2
        self.permutation = pixel_permutation(self.length, permutation_seed) if permuted else None
        self.val: tuple[torch.Tensor, torch.Tensor] | None = None
        self._raw_train_images: torch.Tensor | None = None
        self._cache: dict[tuple[str, torch.device], tuple[torch.Tensor, ...]] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        t0 = time.perf_counter()
        train, test = load_mnist(self.root, self.mirror, self.download)
        (x, y), (xt, yt) = to_tensors(train), to_tensors(test)
        n_fit = len(x) - self.n_val
        self._raw_train_images = x[:PROBE_IMAGES]  # only the gradient-flow probe reads these
        seq = lambda images: pixel_sequences(images, self.downsample, self.permutation)  # noqa: E731
        self.train = (seq(x[:n_fit]), y[:n_fit])
        self.val = (seq(x[n_fit:]), y[n_fit:])
        self.test = (seq(xt), yt)
        if self.train_subset:
            self.train = tuple(t[: self.train_subset] for t in self.train)
        if self.eval_subset:
            self.val = tuple(t[: self.eval_subset] for t in self.val)
            self.test = tuple(t[: self.eval_subset] for t in self.test)
        self.load_seconds = time.perf_counter() - t0

    def _on_device(self, split: str) -> tuple[torch.Tensor, ...]:
        dev = self._device()
        if (split, dev) not in self._cache:  # move once, not at every evaluation
            self._cache[(split, dev)] = tuple(t.to(dev) for t in getattr(self, split))
        return self._cache[(split, dev)]

    def test_dataloader(self) -> EvalBatches:
        # Read once at the end by the task, whole on every rank.
        return EvalBatches(self._on_device("test"), self.eval_batch_size)

    def statistics_batches(self, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The first `n` training batches of a fixed order (seed 0): the same batches at
        every evaluation, for estimating batch-norm population statistics."""
        stream = TrainStream(self._on_device("train"), self.batch_size, n, seed=0)
        return [stream.batch(i) for i in range(n)]

    def probe_batch(self, n: int, full_length: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `n` training images as sequences (CPU), for the gradient-flow probe;
        `full_length` gives the paper's 784-pixel sequences even when training is on a
        downsampled image (in the same order kind: permuted or not)."""
        if n > PROBE_IMAGES:
            raise ValueError(f"probe batch of {n}: at most {PROBE_IMAGES} images are kept")
        if not full_length or self.downsample == 1:
            return self.train[0][:n], self.train[1][:n]
        perm = pixel_permutation(SIDE * SIDE, self.permutation_seed) if self.permuted else None
        return pixel_sequences(self._raw_train_images[:n], 1, perm), self.train[1][:n]

    def provenance(self) -> dict:
        perm = self.permutation
        return {
            "dataset": "sequential_mnist",
            "source": "torchvision.datasets.MNIST",
            "checksums": mirror_mod.checksums("mnist", Path(self.root)),
            "split": f"train = training images [0, {60_000 - self.n_val}), "
            f"val = the last {self.n_val}, test = MNIST test",
            "n_train": len(self.train[0]) if self.train else None,
            "n_val": len(self.val[0]) if self.val else None,
            "n_test": len(self.test[0]) if self.test else None,
            "sequence_length": self.length,
            "downsample": self.downsample,
            "permuted": self.permuted,
            "permutation_seed": self.permutation_seed if self.permuted else None,
            "permutation_sha256": hashlib.sha256(perm.numpy().astype("<i8").tobytes()).hexdigest()
            if perm is not None
            else None,
        }
