"""Teacher forcing vs professor forcing (Lamb et al., NIPS 2016) under the step contract:
one global step = one batch, two optimizers per step (as `shortsci_bench.tasks.gan`).

Each step, on a batch of B training windows x (B, T):
1. the generator runs teacher-forced on x (hidden states h_tf) and free-running from x[:, 0]
   for T steps, feeding back its own samples (hidden states h_fr); the sampling uniforms
   come from a generator seeded by (`noise_seed`, global step), so a step depends only on
   the weights, the seed and the step, and a killed run resumes bit for bit;
2. the discriminator (sees only h_tf and h_fr, detached) takes one step on binary
   cross-entropy: teacher-forced = 1, free-running = 0 (the counted optimizer step);
3. the generator takes one step on the teacher-forced negative log-likelihood plus, when
   `adversarial_weight` > 0 (arm `professor`), `adversarial_weight` x the cross-entropy
   that makes the discriminator call h_fr teacher-forced (the paper's C_f, "make the
   free-running behaviour look like teacher-forced behaviour"), and with `teacher_term`
   also the C_t term (h_tf made to look free-running). The adversarial terms apply only
   while the discriminator's accuracy on this step's batch is at least `min_disc_acc`
   (ours: no generator signal from a discriminator that cannot yet tell them apart).
   With `adversarial_weight` 0 (arm `teacher`) the generator sees the NLL only: plain
   teacher forcing, the discriminator then a bystander that measures how distinguishable
   the two behaviours are (`disc/acc`).
Gradient norms are clipped per optimizer at `clip`.

Evaluation (each `eval_every` steps): `val/bpc`, teacher-forced bits per character over the
validation split (as `mi_charlm`), and the behaviour probe: on `probe.windows` windows of
the validation split at pinned offsets, h_tf and h_fr (pinned sampling uniforms) for T =
`probe.len` and for `probe.long_factor` x T steps (sampling longer than training windows,
the paper's motivating case). `behaviour/probe_acc[_long]` is the held-out accuracy of a
linear discriminant (ridge-regularised Fisher LDA on per-step features [h, h^2]) fitted on
the first half of the windows and scored on the second: 0.5 = the free-running states are
indistinguishable from the teacher-forced ones by such a probe, 1 = fully distinguishable.
`disc/acc` is the training discriminator's mean accuracy over the steps since the last
evaluation. `test/bpc` once at the end.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from experiments.multiplicative_integration.task import setup_corpus
from shortsci_bench.data.batches import seeded_generator
from shortsci_bench.tasks.base import HarnessTask

LN2 = math.log(2.0)
PROBE_SEED = 1_610_090  # the probe's window offsets and sampling uniforms, the same in every run


def linear_probe_accuracy(a: torch.Tensor, b: torch.Tensor, ridge: float = 1e-2) -> float:
    """Held-out accuracy of a Fisher linear discriminant telling `a` from `b`, each (N, T, H)
    sequences: fitted on per-step features [h, h^2] of the first N // 2 sequences of each,
    scored on the rest (balanced), features standardised with the fitted half's statistics.
    Splitting by sequence keeps the steps of one sequence on one side."""
    n = min(len(a), len(b)) // 2
    if n < 1:
        raise ValueError("the probe needs at least two sequences of each kind")

    def feats(h: torch.Tensor) -> torch.Tensor:
        h = h.detach().double().reshape(-1, h.shape[-1])
        return torch.cat([h, h * h], 1)

    fa, fb = feats(a[:n]), feats(b[:n])
    ta, tb = feats(a[n : 2 * n]), feats(b[n : 2 * n])
    both = torch.cat([fa, fb])
    mu, sd = both.mean(0), both.std(0).clamp_min(1e-8)
    fa, fb, ta, tb = ((f - mu) / sd for f in (fa, fb, ta, tb))
    ma, mb = fa.mean(0), fb.mean(0)
    within = torch.cat([fa - ma, fb - mb])
    cov = within.T @ within / len(within)
    cov += ridge * torch.eye(len(cov), dtype=cov.dtype, device=cov.device)
    w = torch.linalg.solve(cov, ma - mb)
    cut = 0.5 * float((ma + mb) @ w)
    acc_a = float(((ta @ w) > cut).double().mean())
    acc_b = float(((tb @ w) <= cut).double().mean())
    return 0.5 * (acc_a + acc_b)


class ProfessorForcingTask(HarnessTask):
    """`model` has `generator` (`CharGRU`) and `discriminator`; `optimizer` is the
    generator's, `discriminator_optimizer` the discriminator's (partials taking `params`)."""

    def __init__(
        self,
        model: nn.Module,
        optimizer,
        discriminator_optimizer,
        adversarial_weight: float = 1.0,
        teacher_term: bool = False,
        min_disc_acc: float = 0.0,
        clip: float | None = 1.0,
        noise_seed: int = 0,
        probe: dict[str, Any] | None = None,
        mean_over_history: tuple[str, ...] = ("val/bpc",),
    ):
        super().__init__(optimizer, None, mean_over_history)
        self.automatic_optimization = False
        self.model = model
        self.discriminator_optimizer_factory = discriminator_optimizer
        self.adversarial_weight = float(adversarial_weight)
        self.teacher_term, self.min_disc_acc = bool(teacher_term), float(min_disc_acc)
        self.clip, self.noise_seed = clip, int(noise_seed)
        self.probe = {"windows": 256, "len": 50, "long_factor": 4, "ridge": 1e-2}
        self.probe.update(dict(probe or {}))
        self._acc_sum, self._acc_n = 0.0, 0
        self._adv_on = 0
        self._nats = self._count = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def setup(self, stage: str) -> None:
        setup_corpus(self, stage)

    def configure_optimizers(self):
        disc = self.discriminator_optimizer_factory(params=self.model.discriminator.parameters())
        gen = self.optimizer_factory(params=self.model.generator.parameters())
        return disc, gen

    # --- training ---------------------------------------------------------------
    def uniforms(self, n: int, steps: int, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(n, steps, generator=generator, dtype=torch.float64).to(self.device)

    def _update(self, *pairs) -> None:
        """`HarnessTask.step_optimizers` with per-optimizer gradient-norm clipping: the first
        optimizer steps through Lightning (counted), the others uncounted."""
        for i, (opt, loss_fn) in enumerate(pairs):
            loss = loss_fn()
            opt.zero_grad()
            self.manual_backward(loss)
            if self.clip:
                self.clip_gradients(
                    opt, gradient_clip_val=self.clip, gradient_clip_algorithm="norm"
                )
            if i == 0:
                opt.step()
            else:
                getattr(opt, "optimizer", opt).step()

    def training_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        gen, disc = self.model.generator, self.model.discriminator
        opt_d, opt_g = self.optimizers()
        u = self.uniforms(len(x), x.shape[1], seeded_generator(self.noise_seed, self.global_step))
        adversarial = self.adversarial_weight > 0
        logits, h_tf = gen.teacher_forced(x)
        with torch.set_grad_enabled(adversarial):
            _, h_fr, _ = gen.free_running(x[:, 0], u)
        nll = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        acc: list[float] = []

        def disc_loss() -> torch.Tensor:
            # one call on both halves (the same as two: no batch statistics in it)
            s_tf, s_fr = disc(torch.cat([h_tf, h_fr]).detach()).chunk(2)
            acc.append(0.5 * float((s_tf > 0).float().mean() + (s_fr <= 0).float().mean()))
            return F.binary_cross_entropy_with_logits(
                s_tf, torch.ones_like(s_tf)
            ) + F.binary_cross_entropy_with_logits(s_fr, torch.zeros_like(s_fr))

        def gen_loss() -> torch.Tensor:
            loss = nll
            if adversarial and acc[0] >= self.min_disc_acc:
                self._adv_on += 1
                disc.requires_grad_(False)  # the generator's step moves the generator only
                s_fr = disc(h_fr)
                term = F.binary_cross_entropy_with_logits(s_fr, torch.ones_like(s_fr))
                if self.teacher_term:
                    s_tf = disc(h_tf)
                    term = term + F.binary_cross_entropy_with_logits(s_tf, torch.zeros_like(s_tf))
                disc.requires_grad_(True)
                loss = loss + self.adversarial_weight * term
            return loss

        self._update((opt_d, disc_loss), (opt_g, gen_loss))
        self._acc_sum += acc[0]
        self._acc_n += 1
        # The loss window and the non-finite check follow the teacher-forced NLL.
        self.check_finite(nll.detach())

    # --- evaluation -------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._nats = torch.zeros((), device=self.device, dtype=torch.float64)
        self._count = torch.zeros((), device=self.device, dtype=torch.float64)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.model.generator(x)
        self._nats += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")
        self._count += y.numel()

    @torch.no_grad()
    def behaviour(self, ids: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(h_tf, h_fr), each (windows, length, H), on pinned windows of `ids`."""
        g = torch.Generator().manual_seed(PROBE_SEED + length)
        n = int(self.probe["windows"])
        if len(ids) <= length:
            raise ValueError(f"probe windows of {length} need a longer split than {len(ids)}")
        starts = torch.randint(0, len(ids) - length, (n,), generator=g)
        x = ids[starts.unsqueeze(1) + torch.arange(length)].to(self.device)
        _, h_tf = self.model.generator.teacher_forced(x)
        _, h_fr, _ = self.model.generator.free_running(x[:, 0], self.uniforms(n, length, g))
        return h_tf, h_fr

    def on_validation_epoch_end(self) -> None:
        nats = float(self._nats) / float(self._count)
        metrics = {"val/bpc": nats / LN2, "val/loss": nats}
        was_training = self.model.training
        self.model.eval()
        try:
            ids = self.trainer.datamodule.splits["val"]
            length = int(self.probe["len"])
            ridge = float(self.probe["ridge"])
            for key, steps in (("", length), ("_long", length * int(self.probe["long_factor"]))):
                h_tf, h_fr = self.behaviour(ids, steps)
                metrics[f"behaviour/probe_acc{key}"] = linear_probe_accuracy(h_tf, h_fr, ridge)
                gap = (h_tf.double().mean((0, 1)) - h_fr.double().mean((0, 1))).norm()
                metrics[f"behaviour/mean_gap{key}"] = float(gap)
        finally:
            self.model.train(was_training)
        if self._acc_n:
            metrics["disc/acc"] = self._acc_sum / self._acc_n
            metrics["disc/adversarial_frac"] = self._adv_on / self._acc_n
        self._acc_sum, self._acc_n, self._adv_on = 0.0, 0, 0
        self.record_eval(metrics)

    def on_train_end(self) -> None:
        self.final_extra["params/generator"] = float(
            sum(p.numel() for p in self.model.generator.parameters())
        )
        if self.diverged:
            return
        was_training = self.model.training
        self.model.eval()
        try:
            nats, count = 0.0, 0
            with torch.no_grad():
                for x, y in self.trainer.datamodule.test_dataloader():
                    logits = self.model.generator(x)
                    nats += F.cross_entropy(
                        logits.flatten(0, 1), y.flatten(), reduction="sum"
                    ).item()
                    count += y.numel()
            self.final_extra["test/bpc"] = nats / count / LN2
        finally:
            self.model.train(was_training)

    # --- checkpoints: the discriminator's accuracy window travels with the weights --------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["professor_forcing"] = {
            "acc_sum": self._acc_sum,
            "acc_n": self._acc_n,
            "adv_on": self._adv_on,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("professor_forcing")
        if state:
            self._acc_sum, self._acc_n = state["acc_sum"], state["acc_n"]
            self._adv_on = state["adv_on"]
