"""InfoGAN training (Chen et al., NIPS 2016, arXiv 1606.03657) on the shared GAN step.

One global step = one D/Q update then one G update (the paper's alternation; `n_critic` 1).
The latent of each step comes from a generator seeded by (`noise_seed`, global step), so a
resumed run is bit-identical. Losses, with L_I = E[-log Q(c | G(z, c))] (the categorical
cross-entropy plus, for the continuous codes, a unit-variance Gaussian's squared error, the
official code's `fix_std=True`):

D scores each step's real and fake images in one batch (its batch norm sees both), in its
own step and in G's. Ours, not the official code's (it scores them in separate batches): with
separate batches the batch norm hides the fakes' overall brightness from D, and in our runs G
never left grey images.

- D and Q: the minimax discriminator loss on real and fake + `info_weight` * L_I on the fake;
- G: the non-saturating loss -log D(G(z, c)) + `info_weight` * L_I.

`info_weight` is the paper's lambda (1). With `info_weight: 0` (the plain GAN arm) G ignores
L_I; Q is still trained, with weight 1, on the trunk's features detached from D, as a probe
of how much of the code a plain GAN's samples carry (the paper's Figure 1 shows the bound for
a GAN "with the same Q network"): D and G are then exactly a plain GAN's.

Each evaluation: `code/test_acc` (the paper's MNIST number: Q's most probable category on the
10,000 test digits, mapped to digit labels by the best one-to-one assignment,
`shortsci_bench.eval.samples.permuted_accuracy`), `info/mi_bound` (log 10 - the categorical
cross-entropy of Q on `n_eval` samples of pinned latents: the variational lower bound on
I(c; G(z, c)), at most log 10), `code/gen_acc` (permuted accuracy of the categorical code
that made each sample against the pinned MNIST evaluator's label of that sample: how much the
code decides the digit, whatever Q does) and the evaluator's sample quality (FID on its
features, label histogram). At the end `info/frac_to_bound`: the fraction of training done at
the first evaluation whose bound reached `bound_frac` of log 10 (2.0 when none did).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from shortsci_bench.data.batches import seeded_generator
from shortsci_bench.eval.samples import categorical_mi_lower_bound, permuted_accuracy
from shortsci_bench.tasks.gan import EVAL_NOISE_SEED, GANTask

NEVER = 2.0  # info/frac_to_bound of a run whose bound never reached the mark


class InfoGANTask(GANTask):
    """`model`: `experiments.infogan.model.InfoGAN` (generator, critic, q, z_dim)."""

    def __init__(self, *args, info_weight: float = 1.0, bound_frac: float = 0.95, **kwargs):
        kwargs.setdefault("loss", "minimax")
        kwargs.setdefault("n_critic", 1)
        kwargs.setdefault("clip", None)
        super().__init__(*args, **kwargs)
        if self.loss != "minimax" or self.n_critic != 1 or self.clip is not None:
            raise ValueError("InfoGAN: minimax loss, one D update per G update, no clipping")
        self.info_weight, self.bound_frac = float(info_weight), float(bound_frac)

    def configure_optimizers(self):
        # Q shares D's trunk and is trained with it (the official code's d_ variables)
        d_params = [*self.model.critic.parameters(), *self.model.q.parameters()]
        critic = self.optimizer_factory(params=d_params)
        generator = self.generator_optimizer_factory(params=self.model.generator.parameters())
        return critic, generator

    # --- latents ----------------------------------------------------------------
    def sample_latent(self, n: int, g: torch.Generator):
        """Noise U(-1, 1)^n_noise, a uniform categorical code (one-hot in the latent), and
        continuous codes U(-1, 1)^n_cont (appendix C.1 and the official `Uniform` specs).
        Returns (latent (n, z_dim), categories (n,), continuous codes (n, n_cont))."""
        m = self.model
        z = torch.rand(n, m.n_noise, generator=g) * 2 - 1
        cat = torch.randint(0, m.n_cat, (n,), generator=g)
        cont = torch.rand(n, m.n_cont, generator=g) * 2 - 1
        latent = torch.cat([z, F.one_hot(cat, m.n_cat).float(), cont], dim=1)
        return latent.to(self.device), cat.to(self.device), cont.to(self.device)

    def noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.sample_latent(n, generator)[0]

    def info_loss(self, h: torch.Tensor, cat: torch.Tensor, cont: torch.Tensor) -> torch.Tensor:
        """L_I up to a constant: -log Q(c_cat | x) - log N(c_cont; mu(x), 1) from trunk features."""
        logits, mu = self.model.q(h)
        return F.cross_entropy(logits, cat) + 0.5 * (cont - mu).pow(2).sum(1).mean()

    # --- training ---------------------------------------------------------------
    @property
    def plain_gan(self) -> bool:
        return self.info_weight == 0

    def d_loss(self, real, latent, cat, cont) -> tuple[torch.Tensor, torch.Tensor]:
        """D and Q's loss and, detached, the discriminator's part alone. In the plain GAN arm
        Q reads D's features detached, so D's trunk sees no information term."""
        with torch.no_grad():
            fake = self.model.generator(latent)
        h = self.model.critic.trunk(torch.cat([real, fake]))
        h_fake = h[len(real) :]
        s = self.model.critic.head(h).reshape(-1)
        s_real, s_fake = s[: len(real)], s[len(real) :]
        d_loss = F.binary_cross_entropy_with_logits(
            s_real, torch.ones_like(s_real)
        ) + F.binary_cross_entropy_with_logits(s_fake, torch.zeros_like(s_fake))
        if self.plain_gan:
            return d_loss + self.info_loss(h_fake.detach(), cat, cont), d_loss.detach()
        return d_loss + self.info_weight * self.info_loss(h_fake, cat, cont), d_loss.detach()

    def g_loss(self, real, latent, cat, cont) -> torch.Tensor:
        """G's loss; D scores the fakes in a batch with `real`, as in D's own step."""
        h = self.model.critic.trunk(torch.cat([real, self.model.generator(latent)]))[len(real) :]
        s = self.model.critic.head(h).reshape(-1)
        loss = F.binary_cross_entropy_with_logits(s, torch.ones_like(s))
        if self.plain_gan:
            return loss
        return loss + self.info_weight * self.info_loss(h, cat, cont)

    def training_step(self, batch, batch_idx: int) -> None:
        real = batch[0] if isinstance(batch, (tuple, list)) else batch
        g = seeded_generator(self.noise_seed, self.global_step)
        for_d = self.sample_latent(len(real), g)
        for_g = self.sample_latent(len(real), g)
        opt_d, opt_g = self.optimizers()
        logged: list[torch.Tensor] = []

        def d_step() -> torch.Tensor:
            loss, d_part = self.d_loss(real, *for_d)
            logged.append(d_part)
            return loss

        self.step_optimizers((opt_d, d_step), (opt_g, lambda: self.g_loss(real, *for_g)))
        # the loss window and the non-finite check follow the discriminator's loss
        self.check_finite(logged[0])

    # --- evaluation -------------------------------------------------------------
    @torch.no_grad()
    def on_validation_epoch_end(self) -> None:
        real, labels = self.evaluation_tensors()[:2]  # GANTask collected images and labels
        was_training = self.model.training
        self.model.eval()
        k = self.model.n_cat
        clusters = torch.cat([self.model.recognise(x)[0].argmax(1) for x in real.split(2000)])
        metrics = {"code/test_acc": permuted_accuracy(clusters.cpu(), labels.cpu(), k)}
        latent, cat, _ = self.sample_latent(
            self.n_eval, torch.Generator().manual_seed(EVAL_NOISE_SEED)
        )
        fake = self.model.generator(latent)
        logits, _ = self.model.recognise(fake)
        metrics["info/mi_bound"] = categorical_mi_lower_bound(F.log_softmax(logits, 1), cat)
        if self.quality is not None:
            metrics.update(self.quality(fake, real[: self.n_eval]))
            digit = self.quality.net(fake.float().cpu()).argmax(1)
            metrics["code/gen_acc"] = permuted_accuracy(cat.cpu(), digit, k)
        self.model.train(was_training)
        self.record_eval(metrics)

    def final_metrics(self) -> dict[str, float]:
        out = super().final_metrics()
        rows = [r for r in self.history if "info/mi_bound" in r]
        if rows:
            mark = self.bound_frac * math.log(self.model.n_cat)
            hit = [r["step"] for r in rows if r["info/mi_bound"] >= mark]
            total = self.trainer.max_steps if self.trainer is not None else rows[-1]["step"]
            out["info/frac_to_bound"] = hit[0] / total if hit else NEVER
        return out
