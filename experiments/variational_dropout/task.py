"""Classification with (variational) dropout: the variational lower bound per example, and
the gradient-variance measurement of Kingma, Salimans & Welling (NIPS 2015), Table 1.

Loss = mean cross-entropy + kl_weight * KL / n_train: the negative SGVB bound divided by
the training-set size, so the KL term (zero for fixed-noise arms) is spread over the
examples as in the paper's objective.

Gradient variance (when `gradvar.enabled`): on the first training minibatch, the variance
over `draws` noise draws of the gradient of the bottom and top weights, for the local
reparameterization trick, separate weight samples per example and one shared weight
sample; once at initialisation (before the first update) and once after training, on the
same minibatch. The draws run on a forked RNG, so measuring does not change training.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from experiments.variational_dropout.model import VariationalDropoutMLP, gradient_variance
from shortsci_bench.tasks.classification import ClassificationTask


class VariationalDropoutTask(ClassificationTask):
    def __init__(
        self,
        model: VariationalDropoutMLP,
        optimizer,
        scheduler=None,
        n_train: int = 60_000,
        kl_weight: float = 1.0,
        gradvar: dict[str, Any] | None = None,
        eval_prefix: str = "test",
        mean_over_history: tuple[str, ...] = ("test/acc",),
    ):
        super().__init__(model, optimizer, scheduler, eval_prefix, None, mean_over_history)
        self.n_train = int(n_train)
        self.kl_weight = float(kl_weight)
        gradvar = dict(gradvar or {})
        self.gradvar = gradvar if gradvar.get("enabled", False) else None
        self._gradvar_batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def before_seed_step(self, batch) -> None:
        """Keep the first minibatch for the gradient-variance measurement, and measure at
        the initialisation (before the first update)."""
        x, y = batch
        if self.gradvar is not None and self._gradvar_batch is None:
            self._gradvar_batch = (x.detach().clone(), y.detach().clone())
            if self.global_step == 0:
                self.final_extra.update(self.measure_gradient_variance("gradvar/init_"))

    def draw_noise(self, batch):
        return self.model.draw_noise(batch[0]) if self.model.training else None

    def seed_loss(self, batch, noise=None) -> torch.Tensor:
        x, y = batch
        nll = F.cross_entropy(self.model(x, noise), y)
        return nll + self.kl_weight * self.model.kl() / self.n_train

    def stacked_losses(self, params, buffers, batch, noise=None) -> torch.Tensor:
        """Every stacked seed's loss (S,), with batched matrix products (seed batching)."""
        x, y = batch
        sub = {k[len("model.") :]: v for k, v in params.items() if k.startswith("model.")}
        logits = self.model.stacked_forward(sub, x, noise)
        seeds, rows = y.shape[:2]
        nll = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        nll = nll.view(seeds, rows).mean(1)
        kl = self.model.stacked_kl(sub)
        return nll if kl is None else nll + self.kl_weight * kl / self.n_train

    def training_step(self, batch, batch_idx):
        self.before_seed_step(batch)
        return self.check_finite(self.seed_loss(batch, self.draw_noise(batch)))

    def on_train_end(self) -> None:
        if self.gradvar is not None and self._gradvar_batch is not None and not self.diverged:
            self.final_extra.update(self.measure_gradient_variance("gradvar/"))

    def measure_gradient_variance(self, prefix: str) -> dict[str, float]:
        """Variances per estimator and their ratios to the local trick's, named with `prefix`."""
        x, y = (t.to(self.device) for t in self._gradvar_batch)
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            var = {
                est: gradient_variance(
                    self.model,
                    x,
                    y,
                    est,
                    draws=int(self.gradvar.get("draws", 100)),
                    chunk=int(self.gradvar.get("chunk", 25)),
                )
                for est in ("lrt", "per_example", "shared")
            }
        out: dict[str, float] = {}
        for layer in ("top", "bottom"):
            lrt = var["lrt"][layer]
            out[f"{prefix}{layer}_lrt"] = lrt
            out[f"{prefix}{layer}_perexample"] = var["per_example"][layer]
            out[f"{prefix}{layer}_shared"] = var["shared"][layer]
            out[f"{prefix}{layer}_perexample_over_lrt"] = var["per_example"][layer] / lrt
            out[f"{prefix}{layer}_shared_over_lrt"] = var["shared"][layer] / lrt
        return out

    def record_eval(self, metrics: dict[str, float]) -> None:
        """Add each layer's mean alpha (noise variance ratio) to every evaluation row."""
        alphas = {f"alpha/layer{i}": a for i, a in enumerate(self.model.mean_alphas())}
        super().record_eval({**metrics, **alphas})

    # The measurement batch and the initialisation's variances travel with the weights.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["vardrop"] = {
            "gradvar_batch": self._gradvar_batch,
            "final_extra": dict(self.final_extra),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("vardrop", {})
        self._gradvar_batch = state.get("gradvar_batch")
        self.final_extra.update(state.get("final_extra", {}))
