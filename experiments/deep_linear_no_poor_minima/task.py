"""Full-batch gradient descent on many deep linear networks, judged against the closed form.

This is not minibatch training, so the task is evaluate-only (`fit_free`): its one
validation pass runs the gradient-descent loop itself, written out below. Each step
updates every initialisation at once (the sum of their losses: the networks share no
weights, so each gets its own gradient). Every `eval_every` steps a history row compares
each network's loss with the closed-form global minimum L* for its rank
(`data.linear_synthetic.global_minimum`), as the relative gap (L - L*) / (L(0) - L*):
0 at the global minimum, 1 at the zero point. The loop stops once every network is
stationary (gradient norm <= grad_tol), or after `steps`.

Once per run (it depends only on the data and the widths): the theorem's assumptions on
the data, the Hessian's eigenvalues at the all-zero weights, and the loss drop along a
path out of that point (positive: the point is a saddle, not a minimum).
"""

from __future__ import annotations

import time

import torch

from experiments.deep_linear_no_poor_minima.data import check_assumptions, global_minimum
from experiments.deep_linear_no_poor_minima.model import (
    DeepLinearEnsemble,
    hessian_eigenvalues,
    loss_drop_from_zero,
)
from shortsci_bench.tasks.base import HarnessTask


class DeepLinearTask(HarnessTask):
    fit_free = True  # run.py calls trainer.validate: the loop below is the training

    def __init__(
        self,
        model: DeepLinearEnsemble,
        optimizer,
        scheduler=None,
        steps: int = 10_000,
        eval_every: int = 250,
        gap_tol: float = 1e-6,
        grad_tol: float = 1e-8,
        hessian_tol: float = 1e-9,
        stop_when_stationary: bool = True,
        mean_over_history: tuple[str, ...] = (),
    ):
        super().__init__(optimizer, scheduler, mean_over_history)
        self.model = model
        self.steps, self.eval_every = int(steps), int(eval_every)
        self.gap_tol, self.grad_tol, self.hessian_tol = gap_tol, grad_tol, hessian_tol
        self.stop_when_stationary = stop_when_stationary

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.final_extra.update(self.landscape_at_zero(x, y))
        optimizer = self.optimizer_factory(params=self.model.parameters())
        self.evaluate(x, y, step=0)
        t0 = time.perf_counter()
        with torch.enable_grad():  # validation runs under no_grad (trainer.inference_mode=false)
            for step in range(1, self.steps + 1):
                loss = self.model.losses(x, y).sum()
                if not torch.isfinite(loss):
                    self.diverged = True
                    break
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                self._train_steps += 1
                if step % self.eval_every == 0 or step == self.steps:
                    self._train_seconds = time.perf_counter() - t0
                    if self.evaluate(x, y, step) and self.stop_when_stationary:
                        break
        self._train_seconds = time.perf_counter() - t0

    def evaluate(self, x: torch.Tensor, y: torch.Tensor, step: int) -> bool:
        """Append one history row; return whether every network is stationary."""
        with torch.enable_grad():
            losses = self.model.losses(x, y)
            grads = torch.autograd.grad(losses.sum(), list(self.model.weights))
        losses = losses.detach()
        grad_norm = torch.sqrt(sum((g**2).sum((1, 2)) for g in grads))
        loss_star = global_minimum(x, y, min(self.model.min_width, y.shape[1]))
        loss_zero = float((y**2).sum() / (2 * len(x)))
        gap = (losses - loss_star) / (loss_zero - loss_star)
        at_global = gap <= self.gap_tol
        stationary = grad_norm <= self.grad_tol
        row = {
            "step": float(step),
            "loss/mean": float(losses.mean()),
            "loss/global_min": loss_star,
            "global/fraction": float(at_global.double().mean()),
            "global/max_gap": float(gap.max()),
            "global/median_gap": float(gap.median()),
            "global/max_grad_norm": float(grad_norm.max()),
            "global/fraction_stationary": float(stationary.double().mean()),
            "global/n_stationary_not_global": float((stationary & ~at_global).sum()),
        }
        self.history.append(row)
        for logger in self.loggers:
            logger.log_metrics({k: v for k, v in row.items() if k != "step"}, step=step)
        return bool(stationary.all())

    def landscape_at_zero(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        hidden = self.model.hidden
        eig = hessian_eigenvalues(x, y, hidden)
        tol = self.hessian_tol * max(1.0, float(eig.abs().max()))
        checks = check_assumptions(x, y)
        return {
            "hessian/n_negative_zero": float((eig < -tol).sum()),
            "hessian/n_positive_zero": float((eig > tol).sum()),
            "hessian/min_eig_zero": float(eig.min()),
            "hessian/max_eig_zero": float(eig.max()),
            "zero/loss_drop": loss_drop_from_zero(x, y, hidden),
            "assumptions/hold": float(checks["holds"]),
            "assumptions/rank_xx": float(checks["rank_xx"]),
            "assumptions/rank_xy": float(checks["rank_xy"]),
            "assumptions/sigma_min_rel_gap": checks["sigma_min_rel_gap"],
            "assumptions/d_x_minus_d_y": float(checks["d_x"] - checks["d_y"]),
        }
