"""Training and evaluation of AIR on multi-MNIST (Eslami et al., NIPS 2016, section 3.1).

One global step = one generated batch. Each evaluation records, on the pinned validation
scenes, `val/count_acc` (the paper's headline: the fraction of scenes whose inferred number
of objects equals the number of digits), `val/elbo` (nats per scene, one sample of every
latent under a fixed seed) and the mean inferred count; at the end the same on the test
scenes (`test/...`), with the accuracy by true count (`test/count_acc_n0` ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from experiments.attend_infer_repeat.model import count_accuracy
from shortsci_bench.tasks.base import HarnessTask


class AIRTask(HarnessTask):
    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        baseline_lr: float = 1e-3,
        eval_seed: int = 1234,
        mean_over_history: tuple[str, ...] = (),
    ):
        super().__init__(optimizer, scheduler, mean_over_history)
        self.model = model
        self.baseline_lr, self.eval_seed = float(baseline_lr), int(eval_seed)
        self._val_batches: list = []

    def configure_optimizers(self):
        # The baseline learns at its own rate (NVIL trains it by regression, apart from the model).
        base = list(self.model.baseline.parameters())
        ids = {id(p) for p in base}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return self.optimizer_factory(
            params=[{"params": rest}, {"params": base, "lr": self.baseline_lr}]
        )

    def training_step(self, batch, batch_idx):
        x, _ = batch
        loss, terms = self.model.loss(x)
        self.log("train/neg_elbo", terms["neg_elbo"].mean(), prog_bar=True)
        return self.check_finite(loss.mean())

    @torch.no_grad()
    def score(self, loader, prefix: str, by_count: bool = False) -> dict[str, float]:
        """Count accuracy, ELBO and mean count over `loader`, under a fixed seed that
        leaves the training RNG streams untouched."""
        was_training = self.model.training
        self.model.eval()
        preds, trues, elbos = [], [], []
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.eval_seed)
                for x, n in loader:
                    x = x.to(self.device)
                    preds.append(self.model.infer_counts(x).cpu())
                    trues.append(n.cpu())
                    elbos.append(-self.model.nll(x).double().cpu())
        finally:
            self.model.train(was_training)
        pred, true, elbo = torch.cat(preds), torch.cat(trues), torch.cat(elbos)
        out = {
            f"{prefix}/count_acc": count_accuracy(pred, true),
            f"{prefix}/elbo": float(elbo.mean()),
            f"{prefix}/count_mean": float(pred.float().mean()),
        }
        if by_count:
            for k in range(int(true.max()) + 1):
                sel = true == k
                if sel.any():
                    out[f"{prefix}/count_acc_n{k}"] = count_accuracy(pred[sel], true[sel])
        return out

    def validation_step(self, batch, batch_idx):
        self._val_batches.append(batch)

    def on_validation_epoch_start(self) -> None:
        self._val_batches = []

    def on_validation_epoch_end(self) -> None:
        self.record_eval(self.score(self._val_batches, "val"))
        self._val_batches = []

    def on_train_end(self) -> None:
        if self.diverged:
            return
        loader = self.trainer.datamodule.test_dataloader()
        self.final_extra.update(self.score(loader, "test", by_count=True))
