"""Adversarial training under the step contract: one global step = one generator update.

A step's batch holds the real data for all of that step's critic (discriminator) updates,
`n_critic` slices of equal size; the noise is drawn from a generator seeded by
(`noise_seed`, global step). So a step depends only on the weights, the seed and the step,
and a run killed at any point resumes bit for bit (`HarnessTask.step_optimizers` counts the
first optimizer step of a batch and steps the rest uncounted).

Losses (`loss`):
- `wasserstein`: Arjovsky, Chintala & Bottou (2017), Algorithm 1. The critic maximises
  E f(real) - E f(fake), its weights clipped to [-clip, clip] after each update; the
  generator minimises -E f(fake).
- `minimax`: Goodfellow et al. (2014) with the non-saturating generator loss they advise
  (the "standard GAN"): binary cross-entropy for the discriminator, -log D(G(z)) for G.

Each evaluation scores `n_eval` samples from pinned noise against the datamodule's pinned
real evaluation set: `critic/distance` (the critic's estimate of the distance it trains
for: E f(real) - E f(fake) for WGAN, the Jensen-Shannon estimate log 2 - L_D / 2 for the
minimax GAN, the quantity the WGAN paper's Figures 3-6 plot) and the `quality` callable's
metrics (e.g. `shortsci_bench.eval.samples.MixtureQuality`). At the end:
`critic/quality_corr`, the Spearman correlation over evaluations between the critic's
distance and the quality measure `quality_key` (lower = better samples), and
`<quality_key>_jitter`, how much that measure moves between evaluations in the second half
of training relative to its level there (0 for a run that has settled).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shortsci_bench.data.batches import seeded_generator
from shortsci_bench.eval.samples import spearman
from shortsci_bench.tasks.base import HarnessTask

LOSSES = ("wasserstein", "minimax")
EVAL_NOISE_SEED = 1_701_078  # the pinned noise of every evaluation, the same in every run


class GANTask(HarnessTask):
    """`model` has `generator` (noise (n, z_dim) -> samples), `critic` (samples -> (n,) or
    (n, 1) scores) and `z_dim`. `optimizer` is the critic's, `generator_optimizer` the
    generator's (both partials taking `params`)."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        generator_optimizer: Callable[..., torch.optim.Optimizer],
        loss: str = "wasserstein",
        n_critic: int = 5,
        clip: float | None = 0.01,
        noise_seed: int = 0,
        n_eval: int = 2000,
        quality: Callable[[torch.Tensor, torch.Tensor], dict[str, float]] | None = None,
        quality_key: str = "quality/sw1",
        mean_over_history: tuple[str, ...] = (),
    ):
        super().__init__(optimizer, None, mean_over_history)
        if loss not in LOSSES:
            raise ValueError(f"loss {loss!r}: choose one of {LOSSES}")
        if n_critic < 1:
            raise ValueError(f"n_critic {n_critic}: need at least one critic update per step")
        self.automatic_optimization = False
        self.model = model
        self.generator_optimizer_factory = generator_optimizer
        self.loss, self.n_critic, self.clip = loss, int(n_critic), clip
        self.noise_seed, self.n_eval = int(noise_seed), int(n_eval)
        self.quality, self.quality_key = quality, quality_key
        self._eval_batches: list[tuple[torch.Tensor, ...]] = []

    def configure_optimizers(self):
        critic = self.optimizer_factory(params=self.model.critic.parameters())
        generator = self.generator_optimizer_factory(params=self.model.generator.parameters())
        return critic, generator

    # --- losses ---------------------------------------------------------------
    def _scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.critic(x).reshape(len(x))

    def critic_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        s_real, s_fake = self._scores(real), self._scores(fake)
        if self.loss == "wasserstein":
            return s_fake.mean() - s_real.mean()
        return F.binary_cross_entropy_with_logits(
            s_real, torch.ones_like(s_real)
        ) + F.binary_cross_entropy_with_logits(s_fake, torch.zeros_like(s_fake))

    def generator_loss(self, fake: torch.Tensor) -> torch.Tensor:
        s_fake = self._scores(fake)
        if self.loss == "wasserstein":
            return -s_fake.mean()
        return F.binary_cross_entropy_with_logits(s_fake, torch.ones_like(s_fake))

    def clip_critic(self) -> None:
        if self.clip is not None:
            with torch.no_grad():
                for p in self.model.critic.parameters():
                    p.clamp_(-self.clip, self.clip)

    def noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.model.z_dim, generator=generator).to(self.device)

    # --- training ---------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> None:
        real = batch[0] if isinstance(batch, (tuple, list)) else batch
        if len(real) % self.n_critic:
            raise ValueError(
                f"a step's batch of {len(real)} does not split into n_critic={self.n_critic} "
                "equal critic batches"
            )
        reals = real.chunk(self.n_critic)
        size = len(reals[0])
        g = seeded_generator(self.noise_seed, self.global_step)
        noises = [self.noise(size, g) for _ in range(self.n_critic + 1)]
        opt_c, opt_g = self.optimizers()
        critic_losses: list[torch.Tensor] = []

        def critic_step(i: int) -> Callable[[], torch.Tensor]:
            def loss() -> torch.Tensor:
                self.clip_critic()  # clipping after update i-1 (and of the initial weights)
                with torch.no_grad():
                    fake = self.model.generator(noises[i])
                value = self.critic_loss(reals[i], fake)
                critic_losses.append(value.detach())
                return value

            return loss

        def generator_step() -> torch.Tensor:
            self.clip_critic()  # after the last critic update
            return self.generator_loss(self.model.generator(noises[-1]))

        self.step_optimizers(
            *[(opt_c, critic_step(i)) for i in range(self.n_critic)], (opt_g, generator_step)
        )
        # The loss window and the non-finite check follow the critic's loss.
        self.check_finite(torch.stack(critic_losses).mean())

    # --- evaluation -------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._eval_batches = []

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_batches.append(tuple(batch) if isinstance(batch, (tuple, list)) else (batch,))

    def evaluation_tensors(self) -> list[torch.Tensor]:
        """The evaluation set collected by `validation_step`, each part (images, labels...)
        concatenated over the batches; the collection is emptied for the next evaluation."""
        parts = [torch.cat(part) for part in zip(*self._eval_batches)]
        self._eval_batches = []
        return parts

    @torch.no_grad()
    def on_validation_epoch_end(self) -> None:
        real = self.evaluation_tensors()[0][: self.n_eval]
        was_training = self.model.training
        self.model.eval()
        fake = self.pinned_samples(len(real))
        metrics = {"critic/distance": self.distance_estimate(real, fake)}
        if self.quality is not None:
            metrics.update(self.quality(fake, real))
        self.model.train(was_training)
        self.record_eval(metrics)

    @torch.no_grad()
    def pinned_samples(self, n: int) -> torch.Tensor:
        """G's samples from the pinned evaluation noise (the same at every evaluation, drawn
        from its own generator, not the training streams), with the model in eval mode."""
        was_training = self.model.training
        self.model.eval()
        fake = self.model.generator(self.noise(n, torch.Generator().manual_seed(EVAL_NOISE_SEED)))
        self.model.train(was_training)
        return fake

    def distance_estimate(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        if self.loss == "wasserstein":
            return float(self._scores(real).mean() - self._scores(fake).mean())
        return math.log(2.0) - 0.5 * float(self.critic_loss(real, fake))

    def final_metrics(self) -> dict[str, float]:
        out = super().final_metrics()
        key = self.quality_key
        rows = [r for r in self.history if key in r and "critic/distance" in r]
        if len(rows) >= 3:
            out["critic/quality_corr"] = spearman(
                [r["critic/distance"] for r in rows], [r[key] for r in rows]
            )
            late = np.array([r[key] for r in rows[len(rows) // 2 :]])
            if len(late) >= 2 and late.mean() > 0:
                out[f"{key}_jitter"] = float(np.abs(np.diff(late)).mean() / late.mean())
            out[f"{key}_best"] = float(min(r[key] for r in rows))
        return {k: v for k, v in out.items() if not math.isnan(v)}
