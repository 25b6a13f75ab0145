"""Training the Weight Normalization CIFAR-10 network (Salimans & Kingma, NIPS 2016, 5.1).

- Before the first update, the data-dependent initialisation (section 3) on `init_batch`
  training images (the authors' code uses 500), skipped when resuming from a checkpoint.
- Adam with the authors' schedule (`WeightNormSchedule`): learning rate constant, then
  decayed linearly to zero over the second half; beta1 0.9, then 0.5 in the second half.
- Every evaluation row carries `test/err` and `train/loss` (mean since the previous
  evaluation); the record adds `train/loss_mean` and `time/step_s`, the wall time of one
  update (forward, backward, Adam), measured between synchronisation points on a GPU.
"""

from __future__ import annotations

import torch
from torch import nn

from shortsci_bench.tasks.train_loss import TrainLossClassificationTask


class WeightNormSchedule(torch.optim.lr_scheduler.LRScheduler):
    """Per step: lr = base * min(1, 2 - 2 step / total) and Adam's beta1 switched from
    `beta1` to `beta1_late` at the half-way point (openai/weightnorm, lasagne/train.py:
    `lr * min(2 - epoch/100, 1)`, `mom1 = 0.9 if epoch < 100 else 0.5`, 200 epochs)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        beta1: float = 0.9,
        beta1_late: float = 0.5,
        last_epoch: int = -1,
    ):
        self.total_steps = max(1, int(total_steps))
        self.beta1, self.beta1_late = beta1, beta1_late
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        late = step >= self.total_steps // 2
        for group in self.optimizer.param_groups:
            if "betas" in group:
                group["betas"] = (self.beta1_late if late else self.beta1, group["betas"][1])
        factor = max(0.0, min(1.0, 2.0 - 2.0 * step / self.total_steps))
        return [base * factor for base in self.base_lrs]


class WeightNormTask(TrainLossClassificationTask):
    def __init__(
        self,
        model: nn.Module,
        optimizer,
        scheduler=None,
        init_batch: int = 500,
        eval_prefix: str = "test",
        mean_over_history: tuple[str, ...] = ("train/loss",),
    ):
        super().__init__(
            model,
            optimizer,
            scheduler,
            eval_prefix=eval_prefix,
            mean_over_history=mean_over_history,
        )
        self.init_batch = int(init_batch)

    def on_train_start(self) -> None:
        # A resumed run restores the initialised weights from its checkpoint instead.
        if self.global_step == 0 and self.init_batch > 0:
            dm = self.trainer.datamodule
            self.model.data_dependent_init(dm.init_batch(self.init_batch))

    # GPU kernels run asynchronously: synchronise so that time/step_s is the update's
    # wall time, not the time to queue it.
    def on_train_batch_start(self, batch, batch_idx) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        super().on_train_batch_start(batch, batch_idx)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        super().on_train_batch_end(outputs, batch, batch_idx)
