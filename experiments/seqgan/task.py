"""SeqGAN training on the oracle task, written out as one loop (evaluate-only, `fit_free`).

1. Training set: `n_train` sequences sampled from the oracle.
2. MLE pre-training of G (`mle_steps` minibatches), then D pre-training (`d_pretrain_steps`
   minibatches of real vs G's samples).
3. `adv_steps` further generator updates: `seqgan`: policy gradient with Monte Carlo
   rewards from D (`mc_rewards`), each followed by `d_steps` updates of D; `mle`: the same
   number of further MLE steps (the baseline trained as long).

`pretrain: false` (arm `seqgan_nopretrain`) skips step 2: adversarial training from a cold
start (random G and D), with the same adversarial schedule.

With `variance_repeats > 0`, before the adversarial phase (at the fixed, pre-trained G and
D) the variance of the Monte Carlo reward and policy-gradient estimates is measured for
each N in `variance_rollouts` (`model.rollout_variance`), from its own seeded generator so
that it does not change the training's random stream.

The score is the oracle NLL of `n_eval` sequences sampled from G (exact per sequence,
averaged over G's samples), recorded after pre-training (`nll/oracle_pretrained`) and at
the end (`nll/oracle`).
"""

from __future__ import annotations

import time

import torch
from torch import nn

from experiments.seqgan.model import (
    SeqGANModels,
    mc_rewards,
    oracle_nll,
    policy_gradient_loss,
    rollout_variance,
)
from shortsci_bench.tasks.base import HarnessTask


class SeqGANTask(HarnessTask):
    fit_free = True

    def __init__(
        self,
        model: SeqGANModels,
        optimizer=None,
        scheduler=None,
        method: str = "seqgan",
        seed: int = 0,
        n_train: int = 10_000,
        n_eval: int = 10_000,
        batch_size: int = 64,
        mle_steps: int = 2000,
        d_pretrain_steps: int = 500,
        adv_steps: int = 200,
        d_steps: int = 5,
        n_rollouts: int = 16,
        g_lr: float = 0.01,
        pg_lr: float = 0.01,
        d_lr: float = 1e-4,
        eval_every: int = 500,
        pretrain: bool = True,
        variance_repeats: int = 0,
        variance_rollouts: tuple[int, ...] = (1, 4, 16),
        variance_seqs: int = 8,
        variance_batch: int = 16,
        mean_over_history: tuple[str, ...] = (),
    ):
        super().__init__(optimizer, scheduler, mean_over_history)
        if method not in ("seqgan", "mle"):
            raise ValueError(f"method must be seqgan or mle, got {method}")
        self.model, self.method, self.seed = model, method, int(seed)
        self.n_train, self.n_eval, self.batch_size = int(n_train), int(n_eval), int(batch_size)
        self.mle_steps, self.d_pretrain_steps = int(mle_steps), int(d_pretrain_steps)
        self.adv_steps, self.d_steps, self.n_rollouts = (
            int(adv_steps),
            int(d_steps),
            int(n_rollouts),
        )
        self.g_lr, self.pg_lr, self.d_lr = float(g_lr), float(pg_lr), float(d_lr)
        self.eval_every = int(eval_every)
        self.pretrain = bool(pretrain)
        self.variance_repeats = int(variance_repeats)
        self.variance_rollouts = tuple(int(n) for n in variance_rollouts)
        self.variance_seqs, self.variance_batch = int(variance_seqs), int(variance_batch)
        self._windows: dict[str, list[float]] = {}

    def configure_optimizers(self):
        return None

    def validation_step(self, batch, batch_idx):
        g = torch.Generator().manual_seed(self.seed)
        m = self.model
        gen, disc = m.generator, m.discriminator
        real = m.oracle.sample(self.n_train, generator=g)
        eval_g = torch.Generator().manual_seed(self.seed + 10_007)
        t0 = time.perf_counter()
        step = 0
        with torch.enable_grad():
            opt_g = torch.optim.Adam(gen.parameters(), lr=self.g_lr)
            opt_d = torch.optim.Adam(disc.parameters(), lr=self.d_lr)
            if self.pretrain:
                for _ in range(self.mle_steps):
                    step += 1
                    self.mle_update(gen, opt_g, real, g)
                    self._train_steps += 1
                    if step % self.eval_every == 0:
                        self.evaluate(step, eval_g)
                for _ in range(self.d_pretrain_steps):
                    self.d_update(gen, disc, opt_d, real, g)
            done = self.history and self.history[-1]["step"] == float(step)
            pretrained = self.history[-1]["nll/oracle"] if done else self.evaluate(step, eval_g)
            self.final_extra["nll/oracle_pretrained"] = pretrained
            if self.variance_repeats > 0:
                var_g = torch.Generator().manual_seed(self.seed + 20_011)
                self.final_extra.update(
                    rollout_variance(
                        gen,
                        disc,
                        self.variance_rollouts,
                        self.variance_repeats,
                        self.variance_seqs,
                        self.variance_batch,
                        var_g,
                    )
                )
            opt_pg = torch.optim.Adam(gen.parameters(), lr=self.pg_lr)
            for _ in range(self.adv_steps):
                step += 1
                if self.method == "mle":
                    self.mle_update(gen, opt_g, real, g)
                else:
                    seqs = gen.sample(self.batch_size, generator=g)
                    q = mc_rewards(gen, disc, seqs, self.n_rollouts, g)
                    loss = policy_gradient_loss(gen, seqs, q)
                    opt_pg.zero_grad(set_to_none=True)
                    loss.backward()
                    opt_pg.step()
                    self._windows.setdefault("train/pg_loss_window", []).append(
                        float(loss.detach())
                    )
                    self._windows.setdefault("train/reward_window", []).append(
                        float(q[:, -1].mean())
                    )
                    for _ in range(self.d_steps):
                        self.d_update(gen, disc, opt_d, real, g)
                self._train_steps += 1
                if step % self.eval_every == 0:
                    self.evaluate(step, eval_g)
        self._train_seconds = time.perf_counter() - t0
        if not self.history or self.history[-1]["step"] != float(step):
            self.evaluate(step, eval_g)

    def mle_update(self, gen, opt, real, g) -> None:
        idx = torch.randint(0, len(real), (self.batch_size,), generator=g)
        loss = -gen.log_prob(real[idx]).mean() / real.shape[1]
        # per-token NLL of the training data: the history's `train/loss_window`
        self._windows.setdefault("train/loss_window", []).append(float(loss.detach()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def d_update(self, gen, disc, opt, real, g) -> None:
        idx = torch.randint(0, len(real), (self.batch_size,), generator=g)
        fake = gen.sample(self.batch_size, generator=g)
        logits = disc(torch.cat([real[idx], fake]))
        target = torch.cat([torch.ones(self.batch_size), torch.zeros(self.batch_size)])
        loss = nn.functional.binary_cross_entropy_with_logits(logits, target)
        self._windows.setdefault("train/d_loss_window", []).append(float(loss.detach()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def evaluate(self, step: int, eval_g: torch.Generator) -> float:
        """Oracle NLL of `n_eval` fresh samples of G, with the mean training losses since the
        last evaluation (MLE, policy-gradient, discriminator: whichever ran)."""
        samples = self.model.generator.sample(self.n_eval, generator=eval_g)
        nll = oracle_nll(self.model.oracle, samples)
        row = {"step": float(step), "nll/oracle": nll}
        row.update({k: sum(v) / len(v) for k, v in self._windows.items() if v})
        self._windows = {}
        self.history.append(row)
        return nll
