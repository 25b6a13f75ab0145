"""Likelihood evaluation for density models, and the task that trains them on it.

Units: negative log-likelihood in **nats per image** (the binarized-MNIST convention) and
**bits per dimension** (CIFAR-10's): bits/dim = nats / (D ln 2) for D = C x H x W values.
For continuous models of 8-bit data (flows), the data are dequantized, y = (x + u) / 256
with u ~ U[0, 1)^D, and the discrete NLL is bounded by -log p(y) + D log 256 nats, where
p is the density on [0, 1]^D (Dinh et al. 2017, section 4.1; Theis et al. 2016).
Variational models report the negative ELBO and the importance-weighted bound of Burda et
al. (2016) with K samples, -log (1/K) sum_k p(x, z_k) / q(z_k | x), recorded with its K.

The model contract for `LikelihoodTask`: `model.nll(x)` returns the per-example training
loss in nats (exact NLL for autoregressive models and flows, negative ELBO for VAEs);
optionally `model.eval_terms(x)` returns per-example tensors (nats unless their name says
otherwise), `nll` among them, from one pass (so a stochastic bound and its parts agree),
averaged over the evaluation set, and `model.test_terms(x)` the same for the final
test pass only (costlier estimates: importance sampling, inverse checks). Terms whose name
ends in `_max` are maxima over examples instead of means.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from shortsci_bench.tasks.base import HarnessTask

LN2 = math.log(2.0)


def bits_per_dim(nats: float | torch.Tensor, dims: int) -> float | torch.Tensor:
    """Nats per example -> bits per dimension."""
    return nats / (dims * LN2)


def nats_from_bits_per_dim(bpd: float | torch.Tensor, dims: int) -> float | torch.Tensor:
    return bpd * dims * LN2


def dequantized_nll(
    log_density_unit_cube: torch.Tensor, dims: int, levels: int = 256
) -> torch.Tensor:
    """Discrete NLL bound in nats for 8-bit data from the log density of y = (x + u) / levels
    on [0, 1]^D: -log p(y) + D log levels."""
    return -log_density_unit_cube + dims * math.log(levels)


def importance_weighted_nll(log_weights: torch.Tensor) -> torch.Tensor:
    """-log (1/K) sum_k exp(log_weights[k]) per example, from log_weights of shape (K, N):
    the importance-weighted bound on the NLL (K = 1: the negative ELBO)."""
    k = log_weights.shape[0]
    return -(torch.logsumexp(log_weights, dim=0) - math.log(k))


class LikelihoodTask(HarnessTask):
    """Trains `model.nll(x).mean()`; each evaluation records `val/nll` (nats per image) and
    `val/bpd`, plus the model's `eval_terms`; after training, the same over the test set
    (`test/...`) with the model's `test_terms` under a fixed seed (`eval_seed`)."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        eval_seed: int = 1234,
        test_at_end: bool = True,
        mean_over_history: tuple[str, ...] = (),
    ):
        super().__init__(optimizer, scheduler, mean_over_history)
        self.model = model
        self.eval_seed, self.test_at_end = int(eval_seed), bool(test_at_end)
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self.check_finite(self.model.nll(x).mean())

    # --- evaluation -----------------------------------------------------------
    @torch.no_grad()
    def score(self, loader, prefix: str, final: bool = False) -> dict[str, float]:
        """Mean (or `_max`) of each term over `loader`, under a fixed seed that leaves the
        training RNG streams untouched; `final` adds the model's `test_terms`."""
        was_training = self.model.training
        self.model.eval()
        sums: dict[str, torch.Tensor] = {}
        count, dims = 0, None
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.eval_seed)
                for (x,) in loader:
                    x = x.to(self.device)
                    dims = x[0].numel()
                    if hasattr(self.model, "eval_terms"):  # one pass for nll and its parts
                        terms = self.model.eval_terms(x)
                    else:
                        terms = {"nll": self.model.nll(x)}
                    if final and hasattr(self.model, "test_terms"):
                        terms.update(self.model.test_terms(x))
                    for name, v in terms.items():
                        v = v.detach().double()
                        if name.endswith("_max"):
                            sums[name] = torch.maximum(sums.get(name, v.max()), v.max())
                        else:
                            sums[name] = sums.get(name, 0) + v.sum()
                    count += len(x)
        finally:
            self.model.train(was_training)
        out: dict[str, float] = {}
        for name, total in sums.items():
            value = float(total) if name.endswith("_max") else float(total) / count
            out[f"{prefix}/{name}"] = value
            if name == "nll" or name.endswith("_nll"):  # nats per image -> bits per dim
                out[f"{prefix}/{name[:-3]}bpd"] = float(bits_per_dim(value, dims))
        return out

    def validation_step(self, batch, batch_idx):
        self._val_batches.append(batch)

    def on_validation_epoch_start(self) -> None:
        self._val_batches: list = []

    def on_validation_epoch_end(self) -> None:
        self.record_eval(self.score(self._val_batches, "val"))
        self._val_batches = []

    def on_train_end(self) -> None:
        if self.diverged or not self.test_at_end:
            return
        self.final_extra.update(self.score(self.trainer.datamodule.test_dataloader(), "test", True))
