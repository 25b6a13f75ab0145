"""Training and evaluation of Mathieu et al. (NIPS 2016, arXiv 1611.03383) on MNIST triplets.

One global step = one batch of triplets [x1; x2; x3] (x1, x2 of one class; x3 of any class,
`data.TripletMNISTDataModule`): first one update of the generative model (encoder and
decoder), then, in the adversarial arm, one update of the discriminator on the fakes of that
update, detached (the released code's order, `train.lua`). The second update steps the torch
optimizer directly (`HarnessTask.step_optimizers`), so one batch is one global step and the
noise of step t comes from a generator seeded by (`noise_seed`, t): a killed run resumes bit
for bit.

The generative model's loss, with Enc(x) = (s, z) (z drawn with the reparameterisation trick
from the encoder's Gaussian) and Dec(s, z):

- `rec_weight` x MSE(Dec(s_i, z_i), x_i) over the three images (plain reconstruction);
- `swap_weight` x MSE(Dec(s_2, z_1), x_1) and MSE(Dec(s_1, z_2), x_2): s swapped between two
  images of one class must still reconstruct (the paper's swap of the specified code);
- `adv_weight` x the adversarial term: Dec(s_2, z_3) and Dec(s_3, z_2) (s from an image of
  possibly another class) must pass the discriminator as real images of the class of their
  s (the BCE against the "real" target `real_label`, 0.95 in the released code);
- `kl_weight` x KL(q(z | x) || N(0, I)), summed over z's dimensions, averaged over images.

The discriminator D(image, class) is trained by BCE: the real images x2, x3 with their
classes against `real_label`, the swapped decodings with the classes of their s against 0.
With `adv_weight: 0` (the `no_adversary` arm) D is neither used nor trained.

The losses are taken on pixels in [-1, 1] (the released code's scale; the harness's MNIST is
in [0, 1]), so the weights keep the released code's balance.

Each evaluation, on the evaluation set (the MNIST test digits, z its mean, BN in eval mode):
- `rec/mse`: per-pixel squared error of Dec(s, z) in [0, 1] pixels;
- `rec/eval_acc`: the pinned MNIST evaluator's accuracy on those reconstructions;
- `swap/class_transfer`: decode (s from image b, z from image a) over pinned pairs (a, b) of
  different classes: the share the evaluator labels as b's class (the class went with s);
- `swap/keeps_z_class`: the share it labels as a's class (the class stayed with z, the
  degenerate solution the adversarial term is there to prevent);
- `leak/z_acc`: accuracy of a linear classifier of the class from z, fitted on the first
  half of the evaluation set and scored on the second (lower: less class information in z);
- `probe/s_acc`: the same classifier from s (the specified code should carry the class).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from shortsci_bench.data.batches import seeded_generator
from shortsci_bench.tasks.base import HarnessTask

EVAL_PAIR_SEED = 1_611_033  # the pinned swap pairs of every evaluation, the same in every run


@torch.enable_grad()
def probe_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    n_classes: int = 10,
    steps: int = 300,
    lr: float = 0.05,
    weight_decay: float = 1e-4,
) -> float:
    """Held-out accuracy of a multinomial logistic regression (features standardised on the
    training half, weights from zero, full-batch Adam for `steps` steps): deterministic."""
    train_x, test_x = train_x.detach().float(), test_x.detach().float()
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    a, b = (train_x - mean) / std, (test_x - mean) / std
    w = torch.zeros(a.shape[1], n_classes, device=a.device, requires_grad=True)
    bias = torch.zeros(n_classes, device=a.device, requires_grad=True)
    opt = torch.optim.Adam([w, bias], lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy(a @ w + bias, train_y) + weight_decay * w.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(((b @ w + bias).argmax(1) == test_y).double().mean())


def swap_pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pinned pairs over an evaluation set: (source of s for each image, mask of the pairs
    whose two images have different classes)."""
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(EVAL_PAIR_SEED))
    perm = perm.to(labels.device)
    return perm, labels[perm] != labels


def swap_scores(
    predicted: torch.Tensor, labels: torch.Tensor, perm: torch.Tensor, differ: torch.Tensor
) -> dict[str, float]:
    """`predicted[i]`: the evaluator's label of Dec(s of image perm[i], z of image i)."""
    p, a, b = predicted[differ], labels[differ], labels[perm][differ]
    return {
        "swap/class_transfer": float((p == b).double().mean()),
        "swap/keeps_z_class": float((p == a).double().mean()),
    }


class DisentangleTask(HarnessTask):
    """`model`: `experiments.disentangling_adversarial.model.DisentanglingAE`. `optimizer`
    is the generative model's (encoder and decoder), `discriminator_optimizer` D's."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        discriminator_optimizer: Callable[..., torch.optim.Optimizer],
        rec_weight: float = 0.5,
        swap_weight: float = 1.0,
        adv_weight: float = 0.01,
        kl_weight: float = 0.1 * 6 / 784,
        real_label: float = 0.95,
        noise_seed: int = 0,
        probe_steps: int = 300,
    ):
        super().__init__(optimizer, None, ())
        self.automatic_optimization = False
        self.model = model
        self.discriminator_optimizer_factory = discriminator_optimizer
        self.rec_weight, self.swap_weight = float(rec_weight), float(swap_weight)
        self.adv_weight, self.kl_weight = float(adv_weight), float(kl_weight)
        self.real_label, self.noise_seed = float(real_label), int(noise_seed)
        self.probe_steps = int(probe_steps)
        self._eval: list[tuple[torch.Tensor, torch.Tensor]] = []
        # a plain dict, so the pinned evaluator is no submodule (and not in checkpoints)
        self._evaluator: dict[str, nn.Module] = {}

    def configure_optimizers(self):
        m = self.model
        gen = self.optimizer_factory(params=[*m.encoder.parameters(), *m.decoder.parameters()])
        disc = self.discriminator_optimizer_factory(params=m.discriminator.parameters())
        return gen, disc

    @property
    def adversarial(self) -> bool:
        return self.adv_weight != 0

    # --- losses ---------------------------------------------------------------
    def generator_losses(
        self, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
        """(total loss, its parts, the swapped decodings D sees (None without adversary)).
        `x` is [x1; x2; x3] in [-1, 1], `eps` the reparameterisation noise of z."""
        m, n = self.model, len(x) // 3
        s, mu, logvar = m.encoder(x)
        z = mu + torch.exp(0.5 * logvar) * eps
        (s1, s2, s3), (z1, z2, z3) = s.split(n), z.split(n)
        ss, zs = [s, s2, s1], [z, z1, z2]
        if self.adversarial:
            ss, zs = [*ss, s2, s3], [*zs, z3, z2]  # (s2, z3) is of class y2, (s3, z2) of y3
        out = m.decoder(torch.cat(ss), torch.cat(zs))
        parts = {
            "rec": F.mse_loss(out[: 3 * n], x),
            "swap": F.mse_loss(out[3 * n : 5 * n], x[: 2 * n]),
            "kl": 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean(),
        }
        loss = (
            self.rec_weight * parts["rec"]
            + self.swap_weight * parts["swap"]
            + self.kl_weight * parts["kl"]
        )
        fake = None
        if self.adversarial:
            fake = out[5 * n :]
            d = m.discriminator(fake, y[n:])
            parts["adv"] = F.binary_cross_entropy_with_logits(
                d, torch.full_like(d, self.real_label)
            )
            loss = loss + self.adv_weight * parts["adv"]
        return loss, parts, fake

    def discriminator_loss(self, x: torch.Tensor, y: torch.Tensor, fake: torch.Tensor):
        """Real x2, x3 with their classes (target `real_label`) and the swapped decodings
        with the classes of their s (target 0), each set in its own batch."""
        n = len(x) // 3
        d_real = self.model.discriminator(x[n:], y[n:])
        d_fake = self.model.discriminator(fake.detach(), y[n:])
        return F.binary_cross_entropy_with_logits(
            d_real, torch.full_like(d_real, self.real_label)
        ) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))

    # --- training ---------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> None:
        x01, y = batch
        x = x01 * 2 - 1
        g = seeded_generator(self.noise_seed, self.global_step)
        eps = torch.randn(len(x), self.model.z_dim, generator=g).to(self.device)
        opt_g, opt_d = self.optimizers()
        kept: dict[str, torch.Tensor] = {}

        def gen_step() -> torch.Tensor:
            loss, _, fake = self.generator_losses(x, y, eps)
            kept["loss"] = loss.detach()
            if fake is not None:
                kept["fake"] = fake.detach()
            return loss

        pairs = [(opt_g, gen_step)]
        if self.adversarial:
            pairs.append((opt_d, lambda: self.discriminator_loss(x, y, kept["fake"])))
        self.step_optimizers(*pairs)
        # the loss window and the non-finite check follow the generative model's loss
        self.check_finite(kept["loss"])

    # --- evaluation -------------------------------------------------------------
    @property
    def evaluator(self):
        if "net" not in self._evaluator:
            from shortsci_bench.eval.mnist_evaluator import load_evaluator

            self._evaluator["net"] = load_evaluator()
        return self._evaluator["net"]

    def on_validation_epoch_start(self) -> None:
        self._eval = []

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval.append((batch[0], batch[1]))

    @torch.no_grad()
    def evaluate(self, x01: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        m = self.model
        s, mu = [], []
        for chunk in (x01 * 2 - 1).split(2000):
            s_, mu_, _ = m.encoder(chunk)
            s.append(s_)
            mu.append(mu_)
        s, mu = torch.cat(s), torch.cat(mu)
        perm, differ = swap_pairs(y)

        def decode01(s_, z_):
            out = [m.decoder(a, b) for a, b in zip(s_.split(2000), z_.split(2000))]
            return (torch.cat(out) + 1) / 2

        def labels(images01):
            net = self.evaluator
            return torch.cat([net(c.float().cpu()).argmax(1) for c in images01.split(2000)])

        rec = decode01(s, mu)
        y_cpu = y.cpu()
        metrics = {
            "rec/mse": float((rec - x01).pow(2).mean()),
            "rec/eval_acc": float((labels(rec) == y_cpu).double().mean()),
        }
        swapped = labels(decode01(s[perm], mu))
        metrics.update(swap_scores(swapped, y_cpu, perm.cpu(), differ.cpu()))
        half = len(y) // 2
        for key, feats in (("leak/z_acc", mu), ("probe/s_acc", s)):
            metrics[key] = probe_accuracy(
                feats[:half], y[:half], feats[half:], y[half:], steps=self.probe_steps
            )
        return metrics

    def on_validation_epoch_end(self) -> None:
        x01 = torch.cat([b[0] for b in self._eval])
        y = torch.cat([b[1] for b in self._eval])
        self._eval = []
        was_training = self.model.training
        self.model.eval()
        metrics = self.evaluate(x01, y)
        self.model.train(was_training)
        self.record_eval(metrics)
