"""MNIST triplets for Mathieu et al. (NIPS 2016): step i's batch is drawn from a generator
seeded by (seed, i), so a resumed run sees the batches an uninterrupted one would.

Each step holds `batch_size` triplets, laid out as [x1; x2; x3] (3 x batch_size images) with
their labels: x1 and x2 share a class drawn uniformly, x3's class is drawn independently
(it may equal x1's), and each image is drawn uniformly within its class, with replacement,
as in the authors' released MNIST loader (`dataset.lua`). The evaluation set is the test
set, as for every MNIST experiment of the harness.
"""

from __future__ import annotations

import torch

from shortsci_bench.data.batches import GeneratedSteps, start_at_global_step
from shortsci_bench.data.mnist import MNISTDataModule


class ClassSampler:
    """Draws images of given classes uniformly from `labels` (any device)."""

    def __init__(self, labels: torch.Tensor, n_classes: int = 10):
        labels = labels.cpu()
        self.n_classes = n_classes
        self.order = torch.argsort(labels, stable=True)  # indices grouped by class
        self.counts = torch.bincount(labels, minlength=n_classes)
        if (self.counts == 0).any():
            raise ValueError(f"every class needs an example; counts {self.counts.tolist()}")
        self.offsets = torch.cumsum(self.counts, 0) - self.counts

    def draw(self, classes: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Indices of one uniformly drawn example of each class in `classes`."""
        within = (torch.rand(len(classes), generator=g) * self.counts[classes]).long()
        return self.order[self.offsets[classes] + within]

    def triplets(self, n: int, g: torch.Generator) -> torch.Tensor:
        """Indices (3n,) of [x1; x2; x3]: x1, x2 of one class, x3 of an independent class."""
        c12 = torch.randint(0, self.n_classes, (n,), generator=g)
        c3 = torch.randint(0, self.n_classes, (n,), generator=g)
        return torch.cat([self.draw(c12, g), self.draw(c12, g), self.draw(c3, g)])


class TripletMNISTDataModule(MNISTDataModule):
    """`batch_size` is the number of triplets a step (3 x batch_size images)."""

    def train_dataloader(self) -> GeneratedSteps:
        x, y = self._on_device("train")
        sampler = ClassSampler(y)

        def build(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            idx = sampler.triplets(self.batch_size, g).to(x.device)
            return x[idx], y[idx]

        trainer = getattr(self, "trainer", None)
        return GeneratedSteps(build, self.steps, self.seed, start_at_global_step(trainer))
