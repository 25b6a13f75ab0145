"""Mean training loss between evaluations, for "learns faster" claims.

Each evaluation row gets `train/loss`: the mean training loss over the updates since the
previous evaluation. With `mean_over_history: [train/loss]` the record then carries
`train/loss_mean`, the mean over the whole run (equal intervals). The running sum stays
on the device (no synchronisation per step) and travels in checkpoints, so a run stopped
between evaluations (SIGTERM) resumes with the same sum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shortsci_bench.tasks.classification import ClassificationTask


class TrainLossTracking:
    """Mixin for a `HarnessTask`: call `track_train_loss(loss)` in `training_step`."""

    _train_loss_sum: torch.Tensor | None = None
    _train_loss_count: int = 0

    def track_train_loss(self, loss: torch.Tensor) -> None:
        loss = loss.detach()
        self._train_loss_sum = loss if self._train_loss_sum is None else self._train_loss_sum + loss
        self._train_loss_count += 1

    def train_loss_since_eval(self) -> dict[str, float]:
        if not self._train_loss_count:
            return {}
        mean = (self._train_loss_sum / self._train_loss_count).item()
        self._train_loss_sum, self._train_loss_count = None, 0
        return {"train/loss": mean}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["train_loss"] = {"sum": self._train_loss_sum, "count": self._train_loss_count}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("train_loss") or {}
        self._train_loss_sum = state.get("sum")
        self._train_loss_count = int(state.get("count", 0))


class TrainLossClassificationTask(TrainLossTracking, ClassificationTask):
    """A `ClassificationTask` whose evaluation rows also carry `train/loss`."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.model(x), y)
        self.track_train_loss(loss)
        return self.check_finite(loss)

    def record_eval(self, metrics: dict[str, float]) -> None:
        super().record_eval({**metrics, **self.train_loss_since_eval()})
