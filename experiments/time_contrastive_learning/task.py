"""Nonlinear ICA by time-contrastive learning (or a baseline), then linear ICA, scored
against the true sources.

Evaluate-only (`fit_free`, as `deep_linear`): the data set is one batch and the task runs
its own minibatch loop, so that the ICA evaluations sit inside one pass. Every
`eval_every` steps, and at the end, a history row records the training loss, TCL's
segment-classification accuracy, and the recovery score: FastICA on the features of every
data point, then the mean absolute correlation with the true sources after the best
matching (`ica.matched_correlation`). TCL's features estimate |s| (their last layer takes
absolute values), so every method is scored against |s| (`corr/abs_sources`, the
authors' measure), reading each estimated component as it is or after |.|, whichever
matches better; `corr/sources` scores the signed s as well.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from experiments.time_contrastive_learning.ica import fastica, matched_correlation
from shortsci_bench.tasks.base import HarnessTask


class NonlinearICATask(HarnessTask):
    fit_free = True

    def __init__(
        self,
        model,
        optimizer=None,
        scheduler=None,
        seed: int = 0,
        steps: int = 10_000,
        batch_size: int = 256,
        eval_every: int = 2_000,
        mean_over_history: tuple[str, ...] = (),
        eval_points: int | None = None,
    ):
        super().__init__(optimizer, scheduler, mean_over_history)
        self.model = model
        self.seed, self.steps, self.batch_size = int(seed), int(steps), int(batch_size)
        self.eval_every = int(eval_every)
        # None: FastICA and the scores on every data point (the paper's); N: on N points
        # evenly spaced over the segments (a cheaper evaluation for short checks)
        self.eval_points = None if eval_points is None else int(eval_points)

    def configure_optimizers(self):
        return None

    def validation_step(self, batch, batch_idx):
        x64, labels, sources = batch
        x = x64.float()
        trainable = getattr(self.model, "trainable", False)
        t0 = time.perf_counter()
        if not trainable:
            self.evaluate(x, labels, sources, step=0, loss=float("nan"))
            return
        optimizer = self.optimizer_factory(params=self.model.parameters())
        g = torch.Generator().manual_seed(self.seed)
        n = len(x)
        per_pass = n // self.batch_size
        perm = torch.randperm(n, generator=g)
        window = []
        with torch.enable_grad():
            for step in range(1, self.steps + 1):
                k = (step - 1) % per_pass
                if k == 0 and step > 1:
                    perm = torch.randperm(n, generator=g)
                idx = perm[k * self.batch_size : (k + 1) * self.batch_size]
                loss = self.model.loss(x[idx], labels[idx], generator=g)
                if not torch.isfinite(loss):
                    self.stop_diverged(f"non-finite training loss at step {step}")
                    break
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                window.append(float(loss.detach()))
                self._train_steps += 1
                if step % self.eval_every == 0 or step == self.steps:
                    self._train_seconds = time.perf_counter() - t0
                    self.evaluate(x, labels, sources, step, float(np.mean(window)))
                    window = []
        self._train_seconds = time.perf_counter() - t0

    @torch.no_grad()
    def evaluate(self, x, labels, sources, step: int, loss: float) -> None:
        if self.eval_points and self.eval_points < len(x):
            keep = torch.linspace(0, len(x) - 1, self.eval_points).round().long()
            x, labels, sources = x[keep], labels[keep], sources[keep]
        features = self.model.features(x).double().numpy()
        s = sources.numpy()
        estimated, info = fastica(features, n_components=s.shape[1], seed=self.seed)
        # ICA's outputs are centred: a feature that estimates |s_i| (TCL) matches |s_i| as
        # it is, one that estimates s_i (linear ICA) matches it after |.|; every method gets
        # the better of the two readings.
        readings = [
            matched_correlation(estimated, np.abs(s)),
            matched_correlation(np.abs(estimated), np.abs(s)),
        ]
        corr_abs, matched = max(readings, key=lambda r: r[0])
        corr_signed, _ = matched_correlation(estimated, s)
        row = {
            "step": float(step),
            "train/loss": loss,
            "corr/abs_sources": corr_abs,
            "corr/abs_sources_min": float(matched.min()),
            "corr/sources": corr_signed,
            "ica/converged": float(info["converged"]),
            "ica/iterations": float(info["iterations"]),
        }
        if step > 0:  # trained: the window's mean loss under the harness's name as well
            row["train/loss_window"] = loss  # (read by tests/test_paper_learning.py)
        if hasattr(self.model, "accuracy"):
            row["tcl/accuracy"] = self.model.accuracy(x, labels)
        self.history.append(row)
        for logger in self.loggers:
            logger.log_metrics({k: v for k, v in row.items() if k != "step"}, step=step)
