"""The plumbing every experiment's LightningModule shares.

- `history`: one row per evaluation (`step` plus metrics), carried in checkpoints;
- RNG states in checkpoints, so noise-driven models (dropout, swapout) resume exactly;
- divergence: a non-finite loss stops the run and marks it `diverged`, and so does a mean
  training loss above `factor` x the first batch's loss at `patience` evaluations in a
  row (the experiment's `task.divergence`; a huge learning rate can keep the loss finite
  but useless, e.g. 2e7 at chance accuracy);
- `final_metrics()`: the last evaluation, means over the history, time per update;
- the step contract: **one global step = one batch**. Training streams index batches by
  `trainer.global_step` (`shortsci_bench.data.batches`), and budgets (`trainer.max_steps`)
  count it, so it must advance by exactly one per batch. Lightning advances it once per
  optimizer step, so a model with several optimizers (a GAN) would count two or more per
  batch and silently break resume and the budget. Such a task sets
  `automatic_optimization = False` and steps its optimizers with `step_optimizers`, which
  counts the first and steps the others uncounted. `on_train_batch_end` enforces it.
- seed batching (`shortsci_bench.seedbatch`, `seeds=[0,1,2]`): a task whose training loss
  is a pure function of its parameters, the batch and the noise it draws can train several
  seeds stacked in one process. It gives `seed_loss(batch, noise)` (its `training_step`
  computes the same thing), `draw_noise(batch)` (every random number that loss needs, drawn
  from the global RNG in the order the single run draws them) and, for side effects before
  a step (e.g. keeping a measurement batch), `before_seed_step(batch)`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch

# The default divergence bound (`task.divergence: {factor, patience}` overrides it): a
# healthy run's loss stays far below 10x its starting value; three evaluations in a row
# rule out one bad interval.
DIVERGENCE_FACTOR = 10.0
DIVERGENCE_PATIENCE = 3


class StepContractError(RuntimeError):
    """A task advanced the global step by other than one per batch."""


class HarnessTask(L.LightningModule):
    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        mean_over_history: Sequence[str] = (),
    ):
        super().__init__()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.mean_over_history = list(mean_over_history)
        self.history: list[dict[str, float]] = []
        # Metrics computed once at the end (e.g. in `on_train_end`, while the model is still
        # on its device): stochastic inference, pinned test episodes, gradient variance.
        self.final_extra: dict[str, float] = {}
        self.diverged = False
        self.diverged_why: str | None = None
        self.divergence_factor, self.divergence_patience = DIVERGENCE_FACTOR, DIVERGENCE_PATIENCE
        self._initial_loss: float | None = None
        self._strikes = 0  # evaluations in a row with the loss above the bound
        self._train_seconds = 0.0
        self._train_steps = 0
        self._t_batch = 0.0
        self._loss_window: torch.Tensor | None = None
        self._loss_window_n = 0

    # --- seed batching (see the module docstring) ----------------------------
    def seed_loss(self, batch: Any, noise: Any = None) -> torch.Tensor:
        """The training loss of one batch for this seed, without side effects; `noise` is
        what `draw_noise` returned for the batch. Tasks that support seed batching give it."""
        raise NotImplementedError(f"{type(self).__name__} gives no seed_loss")

    def draw_noise(self, batch: Any) -> Any:
        """Every random draw `seed_loss` needs for this batch (None: none), from the global
        RNG in the single run's order, so a stacked run draws each seed's numbers exactly."""
        return None

    def stacked_losses(self, params: dict, buffers: dict, batch: Any, noise: Any = None):
        """Optional fast path of seed batching: every seed's loss (S,) computed directly on
        the stacked parameters (named as in `named_parameters`), the stacked batch and noise,
        e.g. with batched matrix products. None (the default): the seeds go through
        `torch.func.vmap` over `seed_loss`, which needs nothing from the task."""
        return None

    # Called before each step of a seed-batched run; None when the task has nothing to do.
    before_seed_step: Callable[[Any], None] | None = None

    def seed_batching_problem(self) -> str | None:
        """Why this task cannot train seeds stacked (None when it can)."""
        if type(self).seed_loss is HarnessTask.seed_loss:
            return f"{type(self).__name__} gives no seed_loss"
        if not self.automatic_optimization:
            return "manual optimization (several optimizers)"
        if type(self).configure_optimizers is not HarnessTask.configure_optimizers:
            return f"{type(self).__name__} configures its own optimizers"
        return None

    # --- optimisation -------------------------------------------------------
    def configure_optimizers(self):
        opt = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return opt
        return {
            "optimizer": opt,
            "lr_scheduler": {
                "scheduler": self.scheduler_factory(optimizer=opt),
                "interval": "step",
            },
        }

    def check_finite(self, loss: torch.Tensor) -> torch.Tensor | None:
        """Return the loss, or None (skipping the step) and stop the run when it is not finite.
        Finite losses are summed on the device (no sync per step) into the mean training loss
        of the window between evaluations, `train/loss_window` in the history."""
        if torch.isfinite(loss).all():
            detached = loss.detach().float().mean()
            if self._initial_loss is None:
                self._initial_loss = float(detached)
            self._loss_window = (
                detached if self._loss_window is None else self._loss_window + detached
            )
            self._loss_window_n += 1
            return loss
        self.stop_diverged(f"non-finite training loss at step {self.global_step}")
        return None

    def stop_diverged(self, why: str) -> None:
        """End the run as `diverged`, saying why."""
        self.diverged, self.diverged_why = True, why
        if self._trainer is not None:
            self.trainer.should_stop = True

    def _check_loss_bound(self, mean: float) -> None:
        """At an evaluation: strike when the mean training loss of the window since the last
        one is above the bound; `patience` strikes in a row end the run."""
        initial, factor = self._initial_loss, self.divergence_factor
        # A bound relative to the first loss means nothing when that loss is not positive.
        if not factor or initial is None or initial <= 0 or mean <= factor * initial:
            self._strikes = 0
            return
        self._strikes += 1
        if self._strikes >= self.divergence_patience:
            self.stop_diverged(
                f"training loss {mean:.4g} above {factor:g}x the initial loss {initial:.4g} "
                f"at {self._strikes} evaluations in a row (step {self.global_step}; "
                "bound: task.divergence)"
            )

    def step_optimizers(self, *pairs: tuple[Any, Callable[[], torch.Tensor]]) -> None:
        """Manual optimization with several optimizers, one global step per batch: for each
        (optimizer, loss function) in order, compute the loss (after the earlier updates,
        as alternating GAN steps need), zero, backward and step. The first optimizer steps
        through Lightning (counted); the others step the wrapped torch optimizer directly,
        which Lightning does not count."""
        for i, (opt, loss_fn) in enumerate(pairs):
            loss = loss_fn()
            opt.zero_grad()
            self.manual_backward(loss)
            if i == 0:
                opt.step()
            else:
                getattr(opt, "optimizer", opt).step()  # uncounted: one global step per batch

    def on_train_start(self) -> None:
        self._step_at_start = self.global_step
        self._batches_this_fit = 0

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._t_batch = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._train_seconds += time.perf_counter() - self._t_batch
        self._train_steps += 1
        self._batches_this_fit = getattr(self, "_batches_this_fit", 0) + 1
        counted = self.global_step - getattr(self, "_step_at_start", 0)
        if not self.diverged and counted != self._batches_this_fit:
            raise StepContractError(
                f"{type(self).__name__}: {counted} global steps for {self._batches_this_fit} "
                "batches; one global step must be one batch (step extra optimizers with "
                "HarnessTask.step_optimizers)"
            )

    # --- evaluation history -------------------------------------------------
    def record_eval(self, metrics: dict[str, float]) -> None:
        """Append one evaluation (at the current global step) and log it."""
        row = {"step": float(self.global_step), **{k: float(v) for k, v in metrics.items()}}
        if self.trainer is not None and self.trainer.sanity_checking:
            return
        window = None
        if self._loss_window_n:
            window = row["train/loss_window"] = float(self._loss_window) / self._loss_window_n
            self._loss_window, self._loss_window_n = None, 0
        self.history.append(row)
        if window is not None:
            self._check_loss_bound(window)
        # already reduced across ranks by the task, so rank zero alone logs them
        self.log_dict({k: v for k, v in row.items() if k != "step"}, rank_zero_only=True)

    def final_metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.history:
            out.update({k: v for k, v in self.history[-1].items() if k != "step"})
        for key in self.mean_over_history:
            values = [row[key] for row in self.history if key in row]
            if values:
                out[f"{key}_mean"] = float(np.mean(values))
        out.update({k: float(v) for k, v in self.final_extra.items()})
        if self._train_steps:
            out["time/step_s"] = self._train_seconds / self._train_steps
        return {k: v for k, v in out.items() if isinstance(v, float) and not math.isnan(v)}

    # --- checkpoints: history and RNG travel with the weights ----------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["harness"] = {
            "history": self.history,
            # the divergence bound's state, so a run stopped between evaluations resumes exactly
            "divergence": {
                "initial": self._initial_loss,
                "loss_window": self._loss_window,
                "loss_window_n": self._loss_window_n,
                "strikes": self._strikes,
            },
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                # as a tensor, so `torch.load(weights_only=True)` accepts the checkpoint
                "numpy": _numpy_state_out(),
                "python": random.getstate(),
            },
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("harness", {})
        self.history = list(state.get("history", []))
        div = state.get("divergence")
        if div:
            self._initial_loss, self._strikes = div["initial"], div["strikes"]
            self._loss_window, self._loss_window_n = div["loss_window"], div["loss_window_n"]
        rng = state.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            if rng["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
            _numpy_state_in(rng["numpy"])
            random.setstate(rng["python"])


def _numpy_state_out() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _numpy_state_in(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached"]))
