"""Training an encoder with SupCon (then a linear classifier on it) or with cross-entropy.

Khosla et al. (NeurIPS 2020), section 4: the representation is trained either with the
supervised contrastive loss (`loss: supcon_out` = L_out, `supcon_in` = L_in) on two views
of each image, after which the encoder is frozen and a linear classifier is trained on its
features with cross-entropy; or end to end with cross-entropy (`loss: ce`), the control.

One global step is one batch throughout. For the SupCon arms, steps < `pretrain_steps`
train encoder + projection head with the contrastive loss; the remaining steps train only
the classifier, on the frozen encoder's features (BN in eval mode, no gradient reaches the
encoder). Parameter groups: encoder and head at `optimizer.lr`, the classifier at
`linear_lr`, each on its own cosine schedule over its own phase (for `ce` the classifier
trains with the encoder, one group over all steps). Evaluations score the classifier on
the test images (`test/acc`, `test/err`); during SupCon pre-training it is still untrained.
`train/loss_window` (the harness's) is the mean training loss since the last evaluation,
contrastive or cross-entropy by phase.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from experiments.supervised_contrastive.model import supcon_loss
from shortsci_bench.tasks.base import HarnessTask
from shortsci_bench.tasks.classification import EvalAccuracy

LOSSES = ("ce", "supcon_out", "supcon_in")


def cosine_in_phase(start: int, length: int):
    """Multiplier of a cosine schedule that runs from `start` for `length` steps and is 0
    outside it."""

    def factor(step: int) -> float:
        k = step - start
        if length <= 0 or k < 0 or k >= length:
            return 0.0
        return 0.5 * (1.0 + math.cos(math.pi * k / length))

    return factor


class SupConTask(HarnessTask):
    def __init__(
        self,
        model: nn.Module,
        optimizer,
        loss: str = "supcon_out",
        temperature: float = 0.1,
        pretrain_steps: int = 1000,
        linear_lr: float = 0.1,
        total_steps: int = 1000,
        ce_lr: float | None = None,
        ce_steps: int | None = None,
        scheduler=None,
        mean_over_history: tuple[str, ...] = (),
    ):
        # `ce_lr` and `ce_steps` are the `ce` arm's settings, which its overlay reads into
        # task.optimizer.lr and trainer.max_steps; nothing here uses them.
        super().__init__(optimizer, None, mean_over_history)
        if loss not in LOSSES:
            raise ValueError(f"task.loss={loss!r}: choose one of {LOSSES}")
        self.model, self.loss_name, self.temperature = model, loss, float(temperature)
        self.total_steps = int(total_steps)
        self.pretrain_steps = self.total_steps if loss == "ce" else int(pretrain_steps)
        if loss != "ce" and not 0 < self.pretrain_steps < self.total_steps:
            raise ValueError(
                f"task.pretrain_steps={pretrain_steps} must leave steps for the linear "
                f"classifier within trainer.max_steps={total_steps}"
            )
        self.linear_lr = float(linear_lr)
        self._eval: EvalAccuracy | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def configure_optimizers(self):
        m = self.model
        if self.loss_name == "ce":
            opt = self.optimizer_factory(params=list(m.parameters()))
            lambdas = [cosine_in_phase(0, self.total_steps)]
        else:
            encoder_and_head = list(m.encoder.parameters()) + list(m.head.parameters())
            opt = self.optimizer_factory(
                params=[
                    {"params": encoder_and_head},
                    {"params": list(m.classifier.parameters()), "lr": self.linear_lr},
                ]
            )
            linear_steps = self.total_steps - self.pretrain_steps
            lambdas = [
                cosine_in_phase(0, self.pretrain_steps),
                cosine_in_phase(self.pretrain_steps, linear_steps),
            ]
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambdas)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def in_linear_phase(self) -> bool:
        return self.loss_name != "ce" and self.global_step >= self.pretrain_steps

    def training_step(self, batch, batch_idx):
        view1, view2, y = batch
        if self.loss_name == "ce":
            loss = F.cross_entropy(self.model(view1), y)
        elif not self.in_linear_phase():
            z = self.model.project(torch.cat([view1, view2]))
            placement = self.loss_name.removeprefix("supcon_")
            loss = supcon_loss(z, torch.cat([y, y]), self.temperature, placement)
        else:
            self.model.encoder.eval()  # frozen: BN statistics stay those of pre-training
            with torch.no_grad():
                features = self.model.encoder(view1)
            loss = F.cross_entropy(self.model.classifier(features), y)
        return self.check_finite(loss)

    def on_validation_epoch_start(self) -> None:
        self._eval = EvalAccuracy(self.device)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self._eval.add(self.model(x), y)

    def on_validation_epoch_end(self) -> None:
        self.record_eval(self._eval.metrics(self.trainer.strategy.reduce, "test"))
