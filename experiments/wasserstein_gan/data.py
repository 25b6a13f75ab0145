"""A ring of Gaussians, the 2-D toy on which GAN mode collapse is usually shown (Metz et al.,
"Unrolled Generative Adversarial Networks", 2016: 8 modes on a circle of radius 2, standard
deviation 0.02). The WGAN paper's own experiments are on LSUN bedrooms; this toy is ours.

Training batch i is drawn from a generator seeded by (seed, i): `batches_per_step` critic
batches of `batch_size` points, so a resumed run sees exactly the batches an uninterrupted
one sees. The evaluation set (`n_eval` points) is drawn from a pinned seed, the same in
every run.
"""

from __future__ import annotations

import lightning as L
import torch

from shortsci_bench.data.batches import EvalBatches, GeneratedSteps, start_at_global_step
from shortsci_bench.eval.samples import ring_modes

EVAL_SEED = 8_000_008  # the real evaluation sample: the same in every run and arm


def sample_ring(n: int, n_modes: int, radius: float, std: float, g: torch.Generator):
    """`n` points of an equal-weight mixture of `n_modes` Gaussians on a circle, (n, 2)."""
    centres = ring_modes(n_modes, radius).float()
    which = torch.randint(0, n_modes, (n,), generator=g)
    return centres[which] + std * torch.randn(n, 2, generator=g)


class RingOfGaussiansDataModule(L.LightningDataModule):
    name = "ring_of_gaussians"

    def __init__(
        self,
        n_modes: int = 8,
        radius: float = 2.0,
        std: float = 0.02,
        batch_size: int = 64,
        batches_per_step: int = 1,
        n_eval: int = 2000,
        steps: int = 1000,
        seed: int = 0,
    ):
        super().__init__()
        self.n_modes, self.radius, self.std = n_modes, radius, std
        self.batch_size, self.batches_per_step = batch_size, batches_per_step
        self.n_eval, self.steps, self.seed = n_eval, steps, seed

    def _draw(self, n: int, g: torch.Generator) -> torch.Tensor:
        return sample_ring(n, self.n_modes, self.radius, self.std, g)

    def train_dataloader(self) -> GeneratedSteps:
        per_step = self.batch_size * self.batches_per_step
        return GeneratedSteps(
            lambda g: self._draw(per_step, g),
            self.steps,
            self.seed,
            start_at_global_step(getattr(self, "trainer", None)),
        )

    def val_dataloader(self) -> EvalBatches:
        real = self._draw(self.n_eval, torch.Generator().manual_seed(EVAL_SEED))
        return EvalBatches((real,), self.n_eval)

    def provenance(self) -> dict:
        return {
            "dataset": "ring_of_gaussians",
            "source": "generated: experiments.wasserstein_gan.data.sample_ring("
            f"n_modes={self.n_modes}, radius={self.radius}, std={self.std})",
            "batch_size": self.batch_size,
            "batches_per_step": self.batches_per_step,
            "n_eval": self.n_eval,
            "eval_seed": EVAL_SEED,
        }
