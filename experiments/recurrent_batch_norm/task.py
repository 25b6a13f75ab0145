"""Training and evaluating the (BN-)LSTM of Cooijmans et al., "Recurrent Batch
Normalization" (ICLR 2017), on sequential MNIST.

On top of `SequenceClassificationTask` (validation during training, test at the end):

- evaluation uses population statistics, re-estimated before every evaluation from a fixed
  set of training batches (the paper's code estimates them after training from training
  data); `test/acc_batch_stats` records the same test set with batch statistics, so a gap
  between the two shows at once instead of hiding behind a silent fallback;
- the gradient-flow probe of the paper's Figure 1(a): ||dLoss/dh_t|| over t at
  initialisation, as `gradflow/log10_first_over_last` (log10 of the first step's norm over
  the last's: near 0 = the gradient survives the trip back through time, very negative =
  it vanishes, very positive = it explodes), its absolute value
  `gradflow/abs_log10_first_over_last` (lower = better preserved, whichever way it fails)
  and `gradflow/log10_mid_over_last`, for the arm's model; with `gradflow.tanh_rnn` the
  same for the figure's own model, a BN tanh RNN with this arm's gamma (`gradflow_rnn/...`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from experiments.recurrent_batch_norm.model import (
    BNTanhRNN,
    batch_statistics,
    estimate_population_statistics,
    hidden_gradient_norms,
    log10_ratio,
)
from shortsci_bench.tasks.sequence_classification import SequenceClassificationTask


def _flow_metrics(prefix: str, norms: list[float]) -> dict[str, float]:
    first = log10_ratio(norms[0], norms[-1])
    return {
        f"{prefix}/log10_first_over_last": first,
        f"{prefix}/abs_log10_first_over_last": abs(first),
        f"{prefix}/log10_mid_over_last": log10_ratio(norms[len(norms) // 2], norms[-1]),
        f"{prefix}/steps": float(len(norms)),
    }


class RecurrentBatchNormTask(SequenceClassificationTask):
    def __init__(
        self,
        model: nn.Module,
        optimizer,
        scheduler=None,
        eval_prefix: str = "val",
        mean_over_history: tuple[str, ...] = ("val/acc", "val/err"),
        population_batches: int = 20,
        gradflow: dict[str, Any] | None = None,
    ):
        super().__init__(model, optimizer, scheduler, eval_prefix, mean_over_history)
        self.population_batches = int(population_batches)
        self.gradflow = dict(gradflow) if gradflow else None

    def setup(self, stage: str) -> None:
        # Lightning calls `setup` before restoring a checkpoint, so the weights here are the
        # seeded initial ones, on a fresh run and on a resumed one alike.
        if stage == "fit" and self.gradflow:
            self.final_extra.update(self.gradient_flow_at_init())

    def gradient_flow_at_init(self) -> dict[str, float]:
        x, y = self.trainer.datamodule.probe_batch(
            int(self.gradflow.get("batch", 100)), bool(self.gradflow.get("full_length", False))
        )
        device = next(self.model.parameters()).device
        x, y = x.to(device), y.to(device)
        out = _flow_metrics("gradflow", hidden_gradient_norms(self.model, x, y).tolist())
        if self.gradflow.get("tanh_rnn", False):
            # The paper's own Figure 1(a) model, with this arm's normalization and gamma;
            # built inside fork_rng: seed-dependent, yet training's random stream is untouched.
            with torch.random.fork_rng(devices=[]):
                rnn = BNTanhRNN(
                    x.shape[-1],
                    self.model.hidden,
                    batchnorm=self.model.batchnorm,
                    gamma_init=self.model.gamma_init,
                    h0_noise=self.model.h0_noise,
                    max_steps=x.shape[1],
                ).to(device)
            out.update(_flow_metrics("gradflow_rnn", hidden_gradient_norms(rnn, x, y).tolist()))
        return out

    def refresh_population_statistics(self) -> None:
        if self.population_batches > 0:
            batches = self.trainer.datamodule.statistics_batches(self.population_batches)
            estimate_population_statistics(self.model, batches)

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self.refresh_population_statistics()

    def on_train_end(self) -> None:
        if self.diverged:
            return
        self.refresh_population_statistics()
        self.final_extra.update(self.test_metrics())
        with batch_statistics(self.model):
            self.final_extra["test/acc_batch_stats"] = self.test_metrics()["test/acc"]
