"""Semi-supervised MNIST: a pinned, class-balanced labelled subset of the 60,000 training
digits beside all 60,000 as unlabelled data (the official code's split: train + valid,
`--count` labels per class).

The labelled subset is a function of (`labels`, `label_seed`) only: for each digit 0..9 in
turn, the first `labels / 10` of a permutation (drawn from one generator seeded by
`label_seed`) of that digit's training indices, in torchvision's MNIST order. Its checksum
(`subset_checksum`: sha256 of the sorted indices and their labels) goes into every record's
data provenance. The official code draws its split from `--seed_data`, one per run; the
paper averages 10 runs, so our seed s uses label subset s (`label_seed: ${seed}`) and the
paper's 10 subsets are our seeds 0..9 (a different draw from theirs).

A step's batch is (labelled x, labelled y, unlabelled x for D, unlabelled x for G's feature
matching), each `batch_size` rows, as the official training loop (`trainx`, `trainx_unl`,
`trainx_unl2`): the unlabelled streams are seeded permutations of the 60,000 per pass, the
labelled one a concatenation of seeded permutations of the subset. Batch i depends only on
(seed, i), so a resumed run reads the same batches.
"""

from __future__ import annotations

import hashlib

import torch

from shortsci_bench.data.batches import (
    SeededSteps,
    seeded_generator,
    start_at_global_step,
)
from shortsci_bench.data.mnist import MNISTDataModule

LABEL_SUBSET_BASE = 160_603_498  # offsets the subset generator from every training stream


def balanced_subset(targets: torch.Tensor, labels: int, seed: int, n_classes: int = 10):
    """Indices (sorted) of `labels / n_classes` examples of each class, pinned by `seed`."""
    if labels % n_classes:
        raise ValueError(f"labels={labels}: must be a multiple of {n_classes} (balanced)")
    per_class = labels // n_classes
    g = torch.Generator().manual_seed(LABEL_SUBSET_BASE + int(seed))
    chosen = []
    for c in range(n_classes):
        idx = torch.nonzero(targets == c).flatten()
        if per_class > len(idx):
            raise ValueError(f"{per_class} labels of class {c} asked, {len(idx)} exist")
        chosen.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.sort(torch.cat(chosen)).values


def subset_checksum(indices: torch.Tensor, targets: torch.Tensor) -> str:
    """sha256 of the sorted indices and their labels (int64, little-endian)."""
    idx = torch.sort(indices.to(torch.int64)).values
    h = hashlib.sha256()
    h.update(idx.numpy().astype("<i8").tobytes())
    h.update(targets[idx].to(torch.int64).numpy().astype("<i8").tobytes())
    return h.hexdigest()


class SemiSupervisedSteps(SeededSteps):
    resume_keys = ("seed", "batch_size", "n_labelled")

    def __init__(self, x, x_lab, y_lab, batch_size, steps, seed, start_step=lambda: 0):
        super().__init__(steps, seed, start_step)
        self.x, self.x_lab, self.y_lab = x, x_lab, y_lab
        self.batch_size, self.n_labelled = int(batch_size), len(x_lab)
        if self.batch_size > len(x):
            raise ValueError(f"batch_size {batch_size} is larger than the training set")
        self.per_pass = len(x) // self.batch_size
        self._cache: dict[int, torch.Tensor] = {}

    def _perm(self, i: int, n: int) -> torch.Tensor:
        if i not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[i] = torch.randperm(n, generator=seeded_generator(self.seed, i))
        return self._cache[i]

    def unlabelled(self, step: int, which: int) -> torch.Tensor:
        epoch, k = divmod(step, self.per_pass)
        perm = self._perm(3 * epoch + which, len(self.x))
        return perm[k * self.batch_size : (k + 1) * self.batch_size]

    def labelled(self, step: int) -> torch.Tensor:
        n = self.n_labelled
        pos = torch.arange(step * self.batch_size, (step + 1) * self.batch_size)
        passes, offsets = pos // n, pos % n
        out = torch.empty_like(pos)
        for p in passes.unique().tolist():
            sel = passes == p
            out[sel] = self._perm(3 * p + 2, n)[offsets[sel]]
        return out

    def batch(self, step: int):
        lab = self.labelled(step).to(self.x.device)
        u1 = self.unlabelled(step, 0).to(self.x.device)
        u2 = self.unlabelled(step, 1).to(self.x.device)
        return self.x_lab[lab], self.y_lab[lab], self.x[u1], self.x[u2]


class SemiSupervisedMNIST(MNISTDataModule):
    """MNIST with `labels` labelled training digits (balanced, pinned by `label_seed`)."""

    name = "mnist_semisup"

    def __init__(
        self, *args, labels: int = 100, label_seed: int = 0, init_examples: int = 500, **kw
    ):
        super().__init__(*args, **kw)
        self.labels, self.label_seed = int(labels), int(label_seed)
        self.init_examples = int(init_examples)
        self.label_idx: torch.Tensor | None = None

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.label_idx is None:
            self.label_idx = balanced_subset(self.train[1], self.labels, self.label_seed)

    @property
    def checksum(self) -> str:
        return subset_checksum(self.label_idx, self.train[1])

    def init_batch(self) -> torch.Tensor:
        """The data-dependent initialisation's batch: `init_examples` training images, the
        first of a permutation pinned by the label seed (the official `trainx[:500]` after
        its data permutation)."""
        g = torch.Generator().manual_seed(LABEL_SUBSET_BASE + 7_919 + self.label_seed)
        idx = torch.randperm(len(self.train[0]), generator=g)[: self.init_examples]
        return self.train[0][idx]

    def train_dataloader(self) -> SemiSupervisedSteps:
        x, y = self._on_device("train")
        lab = self.label_idx.to(x.device)
        trainer = getattr(self, "trainer", None)
        return SemiSupervisedSteps(
            x, x[lab], y[lab], self.batch_size, self.steps, self.seed,
            start_step=start_at_global_step(trainer),
        )  # fmt: skip

    def provenance(self) -> dict:
        out = super().provenance()
        out["label_subset"] = {
            "labels": self.labels,
            "per_class": self.labels // 10,
            "label_seed": self.label_seed,
            "sha256": self.checksum,
            "rule": "experiments/improved_gan/data.py::balanced_subset",
        }
        return out
