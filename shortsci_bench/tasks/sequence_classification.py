"""Classification with a held-out test set: validate during training, test once at the end.

The papers behind `fastweights_assoc` (Ba et al. 2016) and `bnlstm_seqmnist` (Cooijmans
et al. 2017) report curves on a validation split and a single test-set figure. Here the
periodic evaluations go to `val/...` (their mean over the run, `val/err_mean` or
`val/acc_mean`, says how fast a model learned in updates) and, when training ends, the
datamodule's `test_dataloader()` gives `test/acc`, `test/err`, `test/loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shortsci_bench.tasks.classification import ClassificationTask


@torch.no_grad()
def evaluate(model: nn.Module, batches, prefix: str) -> dict[str, float]:
    """Accuracy, error and mean cross-entropy of `model` (in its current mode) over batches."""
    correct = count = loss_sum = 0.0
    for x, y in batches:
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(-1) == y).sum().item()
        count += y.numel()
    acc = correct / count
    return {f"{prefix}/acc": acc, f"{prefix}/err": 1.0 - acc, f"{prefix}/loss": loss_sum / count}


class SequenceClassificationTask(ClassificationTask):
    """`ClassificationTask` evaluating on the validation split during training and on the
    test split (the datamodule's `test_dataloader`) once, in `on_train_end`."""

    def __init__(
        self,
        model: nn.Module,
        optimizer,
        scheduler=None,
        eval_prefix: str = "val",
        mean_over_history: tuple[str, ...] = ("val/err", "val/acc"),
    ):
        super().__init__(model, optimizer, scheduler, eval_prefix, None, mean_over_history)

    def on_train_end(self) -> None:
        if self.diverged:
            return
        self.final_extra.update(self.test_metrics())

    def test_metrics(self) -> dict[str, float]:
        was_training = self.model.training
        self.model.eval()
        try:
            return evaluate(self.model, self.trainer.datamodule.test_dataloader(), "test")
        finally:
            self.model.train(was_training)
