"""CIFAR-10 with two augmented views of every training image, for the contrastive loss.

The shared `CIFAR10DataModule` (`shortsci_bench/data/cifar10.py`) holds the images as
uint8 tensors and augments whole batches; here batch i is (view 1, view 2, labels): the
same images, cropped and flipped twice with independent draws from the generator seeded
by (seed, i), so resume is exact. The cross-entropy arm reads view 1 only.
"""

from __future__ import annotations

import torch

from shortsci_bench.data.batches import TrainStream, rank_world, start_at_global_step
from shortsci_bench.data.cifar10 import CIFAR10DataModule


class TwoViewStream(TrainStream):
    def batch(self, step: int) -> tuple[torch.Tensor, ...]:
        idx = self.indices(step)
        x, y = (t[idx] for t in self.tensors)
        g = torch.Generator().manual_seed(self.seed * 7_919 + step)
        return self.transform(x, g), self.transform(x, g), y


class TwoViewCIFAR10DataModule(CIFAR10DataModule):
    """`CIFAR10DataModule` whose training batches are (view 1, view 2, labels)."""

    def train_dataloader(self) -> TwoViewStream:
        dev = self._device()
        trainer = getattr(self, "trainer", None)
        rank, world = rank_world(trainer)
        return TwoViewStream(
            (self.data.train_images.to(dev), self.data.train_labels.to(dev)),
            self.batch_size,
            self.steps,
            self.seed,
            start_step=start_at_global_step(trainer),
            transform=self.train_transform(dev),
            rank=rank,
            world_size=world,
        )
