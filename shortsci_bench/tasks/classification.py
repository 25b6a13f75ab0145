"""Supervised classification: cross-entropy, accuracy, and an optional activation probe.

The probe follows Ioffe & Szegedy (2015), Figure 1 (b, c): the 15th, 50th and 85th
percentiles of one hidden neuron's input to its nonlinearity, over a fixed batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shortsci_bench.tasks.base import HarnessTask


class EvalAccuracy:
    """Correct predictions, count and summed cross-entropy over one evaluation pass, summed
    across processes at the end: the one accumulation for every classifier's evaluation."""

    def __init__(self, device: torch.device | str):
        self.correct, self.count, self.loss_sum = (torch.zeros((), device=device) for _ in range(3))

    def add(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.loss_sum += F.cross_entropy(logits, y, reduction="sum")
        self.correct += (logits.argmax(-1) == y).sum()
        self.count += y.numel()

    def metrics(self, reduce, prefix: str) -> dict[str, float]:
        """`{prefix}/acc`, `/err`, `/loss`; `reduce` is the strategy's (sums over processes)."""
        correct, count, loss_sum = (
            reduce(t, reduce_op="sum") for t in (self.correct, self.count, self.loss_sum)
        )
        acc = (correct / count).item()
        return {
            f"{prefix}/acc": acc,
            f"{prefix}/err": 1.0 - acc,
            f"{prefix}/loss": (loss_sum / count).item(),
        }


class ClassificationTask(HarnessTask):
    def __init__(
        self,
        model: nn.Module,
        optimizer,
        scheduler=None,
        eval_prefix: str = "test",
        probe: dict[str, Any] | None = None,
        mean_over_history: tuple[str, ...] = ("test/acc",),
    ):
        super().__init__(optimizer, scheduler, mean_over_history)
        self.model = model
        self.eval_prefix = eval_prefix
        self.probe = dict(probe) if probe else None
        self._eval: EvalAccuracy | None = None
        self._probe_x: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def seed_loss(self, batch, noise=None) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.model(x), y)

    def stacked_losses(self, params, buffers, batch, noise=None) -> torch.Tensor | None:
        """Every stacked seed's loss (S,) from its model's `stacked_forward` (batched matrix
        products), or None when the model has none (the seeds then go through vmap)."""
        forward = getattr(self.model, "stacked_forward", None)
        if forward is None:
            return None
        x, y = batch
        logits = forward(_sub(params, "model."), _sub(buffers, "model."), x)
        seeds, rows = y.shape[:2]
        per_row = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        return per_row.view(seeds, rows).mean(1)

    def training_step(self, batch, batch_idx):
        return self.check_finite(self.seed_loss(batch))

    def on_validation_epoch_start(self) -> None:
        self._eval = EvalAccuracy(self.device)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        if self.probe is not None and self._probe_x is None and batch_idx == 0:
            self._probe_x = x[: int(self.probe.get("batch", 1000))].clone()
        self._eval.add(self.model(x), y)

    def on_validation_epoch_end(self) -> None:
        metrics = self._eval.metrics(self.trainer.strategy.reduce, self.eval_prefix)
        if self.probe is not None and self._probe_x is not None:
            metrics.update(self.probe_percentiles())
        self.record_eval(metrics)

    def probe_percentiles(self) -> dict[str, float]:
        layer, neuron = int(self.probe.get("layer", -1)), int(self.probe.get("neuron", 0))
        z = self.model.pre_activations(self._probe_x)[layer][:, neuron].float().cpu().numpy()
        p15, p50, p85 = np.percentile(z, [15, 50, 85])
        return {"probe/p15": float(p15), "probe/p50": float(p50), "probe/p85": float(p85)}

    def final_metrics(self) -> dict[str, float]:
        out = super().final_metrics()
        medians = [row["probe/p50"] for row in self.history if "probe/p50" in row]
        if len(medians) > 1:
            out["probe/p50_drift"] = float(np.mean(np.abs(np.diff(medians))))
        return out


def _sub(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under `prefix`, named without it (a submodule's view of stacked state)."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
