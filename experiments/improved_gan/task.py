"""Semi-supervised GAN training of Salimans et al. (NIPS 2016, arXiv 1606.03498), section 5,
on the shared GAN step (`shortsci_bench.tasks.gan.GANTask`): one global step = one D update
then one G update (the official loop), noise seeded by (`noise_seed`, global step).

D is a K-class classifier with logits l_1..l_K; the generated images are class K+1 with its
logit fixed at 0, so D(x) = P(real | x) = Z(x) / (Z(x) + 1), Z(x) = sum_k exp l_k(x). Losses
(the official `train_mnist_feature_matching.py`):

- supervised: cross-entropy of the K classes on the labelled batch, -E[l_y - logsumexp(l)];
- unsupervised (`unsupervised_loss`): 0.5 E_unl[-log D(x)] + 0.5 E_fake[-log(1 - D(G(z)))]
  = 0.5 E[-lse + softplus(lse)] on unlabelled data + 0.5 E[softplus(lse)] on samples;
- D minimises supervised + `unlabeled_weight` * unsupervised (1 in the paper);
- G (`generator_loss`): `feature_matching` (the paper's section 3.1): the mean squared
  difference between the mean features of D's last hidden layer on samples and on another
  unlabelled batch; or `minimax`, the loss the official minibatch-discrimination scripts
  give G (`loss_gen = -T.mean(T.nnet.softplus(l_gen))`): minimise E log(1 - D(G(z))) =
  -E softplus(logsumexp l(G(z))), the original minimax GAN loss (not the non-saturating one);
- `g_steps` G updates after each D update (the official minibatch scripts: 3), each on
  fresh noise.

`unlabeled_weight: 0` is the supervised-only baseline: D trained on the labelled batch alone
(same network, noise, optimizer and labels), G not trained.

Evaluation: the test error of D with Polyak-averaged weights (official: avg <- avg +
`polyak_rate` (p - avg) after each D update, from zeros; noise off): `test/errors` (out of
the evaluation set, 10,000 test digits), `test/error` (fraction), and `test/error_raw` with
the current weights. With minibatch discrimination D's output for a digit depends on the
other digits of its batch, so the test set then goes through D in batches of `eval_batch`
(the official test loop: batches of 100); without it, in one pass.

Sample quality (`quality`; semi-supervised arms only, where G is trained): `n_eval` samples from the pinned
evaluation noise (G in eval mode: batch norm with its running statistics) scored against the
first `n_eval` evaluation digits by the pinned MNIST evaluator
(the config's `shortsci_bench.eval.mnist_evaluator.MNISTSampleQuality`: `quality/fid`,
`quality/inception_score` and the label histogram). Scoring draws nothing from the training
streams; building the evaluator, once at set-up, does draw from torch's global generator (its
network is initialised before the pinned weights are loaded), so D's noise differs from a run
built without it (a known wart of the shared evaluator, left so that published records stay
reproducible at their config hashes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from shortsci_bench.data.batches import seeded_generator
from shortsci_bench.tasks.gan import GANTask

GENERATOR_LOSSES = ("feature_matching", "minimax")


def unsupervised_loss(logits_unl: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """0.5 E_unl[-log D(x)] + 0.5 E_fake[-log(1 - D(x))] with the K+1th logit fixed at 0."""
    lse_u = torch.logsumexp(logits_unl, 1)
    lse_f = torch.logsumexp(logits_fake, 1)
    return -0.5 * lse_u.mean() + 0.5 * F.softplus(lse_u).mean() + 0.5 * F.softplus(lse_f).mean()


class SemiSupervisedGANTask(GANTask):
    """`model`: `experiments.improved_gan.model.ImprovedGAN`."""

    def __init__(
        self,
        *args,
        unlabeled_weight: float = 1.0,
        polyak_rate: float = 1e-4,
        generator_loss: str = "feature_matching",
        g_steps: int = 1,
        eval_batch: int | None = None,
        **kwargs,
    ):
        kwargs.setdefault("loss", "minimax")
        kwargs.setdefault("n_critic", 1)
        kwargs.setdefault("clip", None)
        super().__init__(*args, **kwargs)
        if self.n_critic != 1 or self.clip is not None:
            raise ValueError("semi-supervised GAN: one D update per step, no clipping")
        if generator_loss not in GENERATOR_LOSSES:
            raise ValueError(f"generator_loss {generator_loss!r}: choose one of {GENERATOR_LOSSES}")
        if g_steps < 1:
            raise ValueError(f"g_steps {g_steps}: at least one G update per step")
        self.unlabeled_weight, self.polyak_rate = float(unlabeled_weight), float(polyak_rate)
        self.generator_loss, self.g_steps = generator_loss, int(g_steps)
        self.eval_batch = None if eval_batch is None else int(eval_batch)
        if self.model.critic.minibatch is not None and self.eval_batch is None:
            raise ValueError(
                "minibatch discrimination: set eval_batch (D sees the test set in batches)"
            )
        # Polyak averages of D's trainable parameters, from zeros as the official code; buffers,
        # so checkpoints carry them
        self._avg_names = [n for n, _ in self.model.critic.named_parameters()]
        for i, (_, p) in enumerate(self.model.critic.named_parameters()):
            self.register_buffer(f"polyak_{i}", torch.zeros_like(p))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @property
    def semi_supervised(self) -> bool:
        return self.unlabeled_weight > 0

    def noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(n, self.model.z_dim, generator=generator).to(self.device)  # U(0, 1)

    # --- data-dependent initialisation --------------------------------------------
    def on_train_start(self) -> None:
        super().on_train_start()
        if not bool(self.initialised):  # a resumed run has its weights from the checkpoint
            self.data_dependent_init(self.trainer.datamodule.init_batch().to(self.device))

    @torch.no_grad()
    def data_dependent_init(self, x: torch.Tensor) -> None:
        """Official `init_param(trainx[:500])`: one pass with the noise on, setting each
        dense layer's scale and bias so that its pre-activations are standardised."""
        was = self.model.critic.training
        self.model.critic.train()
        self.model.critic(x, init=True)
        self.model.critic.train(was)
        self.initialised.fill_(True)

    # --- losses -------------------------------------------------------------------
    def d_loss(self, x_lab, y_lab, x_unl, z) -> tuple[torch.Tensor, torch.Tensor]:
        """D's loss and, detached, its supervised part."""
        logits_lab, _ = self.model.critic(x_lab)
        loss_lab = F.cross_entropy(logits_lab, y_lab)
        if not self.semi_supervised:
            return loss_lab, loss_lab.detach()
        with torch.no_grad():
            fake = self.model.generator(z)
        logits_unl, _ = self.model.critic(x_unl)
        logits_fake, _ = self.model.critic(fake)
        loss_unl = unsupervised_loss(logits_unl, logits_fake)
        return loss_lab + self.unlabeled_weight * loss_unl, loss_lab.detach()

    def g_loss(self, x_unl2, z) -> torch.Tensor:
        """Feature matching on D's last hidden layer (official `layers[-3]`), or the minimax
        loss E log(1 - D(G(z))) = -E softplus(logsumexp l) (the official minibatch scripts)."""
        logits_fake, f_fake = self.model.critic(self.model.generator(z))
        if self.generator_loss == "minimax":
            return -F.softplus(torch.logsumexp(logits_fake, 1)).mean()
        with torch.no_grad():
            _, f_real = self.model.critic(x_unl2)
        return (f_fake.mean(0) - f_real.mean(0)).pow(2).mean()

    def training_step(self, batch, batch_idx: int) -> None:
        x_lab, y_lab, x_unl, x_unl2 = batch
        g = seeded_generator(self.noise_seed, self.global_step)
        z_d = self.noise(len(x_unl), g)
        z_gs = [self.noise(len(x_unl2), g) for _ in range(self.g_steps)]
        opt_d, opt_g = self.optimizers()
        logged: list[torch.Tensor] = []

        def d_step() -> torch.Tensor:
            loss, sup = self.d_loss(x_lab, y_lab, x_unl, z_d)
            logged.append(sup)
            return loss

        pairs = [(opt_d, d_step)]
        if self.semi_supervised:
            pairs += [(opt_g, lambda z=z: self.g_loss(x_unl2, z)) for z in z_gs]
        self.step_optimizers(*pairs)
        self.update_polyak()
        # the loss window and the non-finite check follow the supervised loss, which both
        # arms minimise
        self.check_finite(logged[0])

    @torch.no_grad()
    def update_polyak(self) -> None:
        for i, (_, p) in enumerate(self.model.critic.named_parameters()):
            avg = getattr(self, f"polyak_{i}")
            avg.add_(p.detach() - avg, alpha=self.polyak_rate)

    def averaged_params(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, f"polyak_{i}") for i, n in enumerate(self._avg_names)}

    # --- evaluation -----------------------------------------------------------------
    @torch.no_grad()
    def on_validation_epoch_end(self) -> None:
        x, y = self.evaluation_tensors()[:2]  # GANTask collected images and labels
        critic = self.model.critic
        was = critic.training
        critic.eval()  # no noise at test time (official deterministic=True)
        chunks = x.split(self.eval_batch) if self.eval_batch else (x,)
        avg = torch.cat([functional_call(critic, self.averaged_params(), (c,))[0] for c in chunks])
        raw = torch.cat([critic(c)[0] for c in chunks])
        critic.train(was)
        errors = int((avg.argmax(1) != y).sum())
        metrics = {
            "test/errors": float(errors),
            "test/error": errors / len(y),
            "test/error_raw": float((raw.argmax(1) != y).float().mean()),
        }
        if self.semi_supervised and self.quality is not None:
            real = x[: self.n_eval]
            metrics.update(self.quality(self.pinned_samples(len(real)), real))
        self.record_eval(metrics)
