"""Character-level language modelling in bits per character, with the diagnostics of Wu et
al. (NIPS 2016) Figure 1: gradient reaching back through time and hidden-unit saturation.

- training: mean next-character cross-entropy over random windows (one batch per step);
- `val/bpc` at each evaluation over the whole validation split, `test/bpc` once at the end
  (cross-entropy in nats / ln 2, each contiguous row run from a zero state);
- at the end, on the first `probe.len` characters of the validation rows:
  `gradflow/log10_first_over_last`, log10 of ||dL_T/dh_1|| / ||dL_T/dh_T|| for the loss
  at the last step (higher = more gradient reaches the start of the window), and
  `hidden/saturated_frac`, the fraction of hidden outputs with |h| > `probe.saturation`;
- `params/total` and `params/mi_extra_frac` (MI's alpha, beta1, beta2 over the rest).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from shortsci_bench.tasks.base import HarnessTask

LN2 = math.log(2.0)


@torch.no_grad()
def bits_per_char(model: nn.Module, batches) -> tuple[float, float, int]:
    """(bits per character, nats summed, characters) of `model` over (inputs, targets)."""
    nats, count = 0.0, 0
    for x, y in batches:
        logits = model(x)
        nats += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
        count += y.numel()
    return nats / count / LN2, nats, count


def gradient_flow(model, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """||dL_T/dh_t|| for t = 1..T, where L_T is the cross-entropy at the last step only."""
    logits, hs = model.with_states(x)
    loss = F.cross_entropy(logits[:, -1], y[:, -1])
    grads = torch.autograd.grad(loss, hs)
    return [float(g.norm()) for g in grads]


@torch.no_grad()
def saturated_fraction(model, x: torch.Tensor, threshold: float) -> float:
    _, hs = model.with_states(x)
    h = torch.stack(hs)
    return float((h.abs() > threshold).float().mean())


def setup_corpus(task, stage: str) -> None:
    """Set the character corpus up and refuse a model sized for another vocabulary (shared
    with professor forcing's character model, which reads the same corpus)."""
    dm = task.trainer.datamodule
    dm.setup(stage)
    if dm.vocab_size != task.model.vocab_size:
        raise ValueError(
            f"model.vocab_size={task.model.vocab_size} but the corpus has {dm.vocab_size} "
            "symbols: set model.vocab_size in the experiment config"
        )


class CharLanguageModelTask(HarnessTask):
    def __init__(
        self,
        model: nn.Module,
        optimizer,
        scheduler=None,
        mean_over_history: tuple[str, ...] = ("val/bpc",),
        probe: dict[str, Any] | None = None,
    ):
        super().__init__(optimizer, scheduler, mean_over_history)
        self.model = model
        self.probe = {"len": 100, "saturation": 0.95, **(dict(probe) if probe else {})}
        self._nats = self._count = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def setup(self, stage: str) -> None:
        setup_corpus(self, stage)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.model(x)
        return self.check_finite(F.cross_entropy(logits.flatten(0, 1), y.flatten()))

    def on_validation_epoch_start(self) -> None:
        self._nats = torch.zeros((), device=self.device, dtype=torch.float64)
        self._count = torch.zeros((), device=self.device, dtype=torch.float64)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.model(x)
        self._nats += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")
        self._count += y.numel()

    def on_validation_epoch_end(self) -> None:
        nats = float(self._nats) / float(self._count)
        self.record_eval({"val/bpc": nats / LN2, "val/loss": nats})

    def on_train_end(self) -> None:
        total = sum(p.numel() for p in self.model.parameters())
        extra = self.model.mi_parameter_count()
        self.final_extra.update(
            {"params/total": float(total), "params/mi_extra_frac": extra / (total - extra)}
        )
        if self.diverged:
            return
        was_training = self.model.training
        self.model.eval()
        try:
            dm = self.trainer.datamodule
            bpc, _, _ = bits_per_char(self.model, dm.test_dataloader())
            x, y = dm.eval_rows_of("val")
            x, y = x[:, : int(self.probe["len"])], y[:, : int(self.probe["len"])]
            with torch.enable_grad():
                norms = gradient_flow(self.model, x, y)
            self.final_extra.update(
                {
                    "test/bpc": bpc,
                    "gradflow/log10_first_over_last": math.log10(max(norms[0], 1e-300) / norms[-1]),
                    "hidden/saturated_frac": saturated_fraction(
                        self.model, x, float(self.probe["saturation"])
                    ),
                }
            )
        finally:
            self.model.train(was_training)
