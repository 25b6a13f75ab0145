"""Label-stream training and per-instance evaluation for MANN, its LSTM and 1-NN baselines.

Santoro et al., ICML 2016, section 4.1 / Table 1: each episode is a stream of drawings of a few
classes, labels shown one step late; the loss is the cross-entropy of every step's prediction.
Accuracy is reported by instance: over the k-th presentation of each class in a stream
(`test/acc_inst<k>`), with the half-width of its 95% interval over the pinned test streams
(`test/acc_inst<k>_ci95`). The first presentation can only be guessed.

`test/acc_inst<k>_exclusion` is the chance line a model must beat to show that it binds labels
to drawings: the expected accuracy of a guesser that knows which drawings are of classes
already shown and which labels are taken, but not which label goes with which class.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from shortsci_bench.data.episodes import mean_ci95
from shortsci_bench.tasks.base import HarnessTask


def instance_numbers(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """For each step, how many times its class has been shown so far, itself included (1, 2, ...)."""
    onehot = F.one_hot(y, n_classes)
    return onehot.cumsum(dim=1).gather(-1, y.unsqueeze(-1)).squeeze(-1)


def label_exclusion_accuracy(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Per step, the expected accuracy of the best guesser without label binding.

    A new class gets one of the labels not yet shown (1 / unused); a class seen before gets
    one of the labels shown so far (1 / used). Labels arrive one step late, so "shown so far"
    means at earlier steps.
    """
    onehot = F.one_hot(y, n_classes)
    seen_before = (onehot.cumsum(dim=1) - onehot) > 0  # [E, T, C]: class c shown before t
    used = seen_before.sum(-1)  # distinct labels shown before step t
    is_new = ~seen_before.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    return torch.where(is_new, 1.0 / (n_classes - used), 1.0 / used.clamp(min=1))


def _streams_with(parts: list[torch.Tensor]) -> torch.Tensor:
    """Per-stream means gathered over batches, without the streams that had no such step."""
    values = torch.cat(parts)
    return values[~torch.isnan(values)]


class MANNTask(HarnessTask):
    def __init__(
        self,
        model: nn.Module,
        optimizer,
        scheduler=None,
        n_classes: int = 5,
        instances_reported: Sequence[int] = (1, 2, 3, 4, 5, 10),
        fit_free: bool = False,
        mean_over_history: tuple[str, ...] = (),
    ):
        super().__init__(optimizer, scheduler, mean_over_history)
        self.model = model
        self.n_classes = n_classes
        self.instances_reported = list(instances_reported)
        self.fit_free = fit_free
        self._acc: dict[int, list[torch.Tensor]] = {}
        self._chance: dict[int, list[torch.Tensor]] = {}
        self._t_eval = 0.0
        self._episodes_per_step = 0
        self._eval_episodes_per_s = float("nan")

    def scores(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.model(x.flatten(2), y)  # drawings flattened: 20x20 -> 400 inputs

    def training_step(self, batch, batch_idx):
        x, y = batch
        self._episodes_per_step = len(x)
        s = self.scores(x, y)
        return self.check_finite(F.cross_entropy(s.reshape(-1, self.n_classes), y.reshape(-1)))

    def on_validation_epoch_start(self) -> None:
        self._acc = {k: [] for k in self.instances_reported}
        self._chance = {k: [] for k in self.instances_reported}
        self._t_eval = time.perf_counter()

    @torch.no_grad()
    def validation_step(self, batch, batch_idx):
        x, y = batch
        correct = (self.scores(x, y).argmax(-1) == y).float()
        inst = instance_numbers(y, self.n_classes)
        chance = label_exclusion_accuracy(y, self.n_classes)
        for k in self.instances_reported:
            at_k = (inst == k).float()
            # per stream: accuracy over the classes presented a k-th time (NaN if none were)
            self._acc[k].append((correct * at_k).sum(1) / at_k.sum(1))
            self._chance[k].append((chance * at_k).sum(1) / at_k.sum(1))

    def on_validation_epoch_end(self) -> None:
        metrics = {}
        n_streams = 0
        for k, parts in self._acc.items():
            acc = _streams_with(parts)
            n_streams = max(n_streams, len(acc))
            if len(acc):
                mean, half = mean_ci95(acc)
                metrics[f"test/acc_inst{k}"] = mean
                metrics[f"test/acc_inst{k}_ci95"] = half
                # the same streams have a k-th presentation, so the chance line is defined too
                metrics[f"test/acc_inst{k}_exclusion"] = (
                    _streams_with(self._chance[k]).mean().item()
                )
        seconds = time.perf_counter() - self._t_eval
        metrics["time/eval_s"] = seconds
        self._eval_episodes_per_s = n_streams / seconds
        self.record_eval(metrics)

    def final_metrics(self) -> dict[str, float]:
        out = super().final_metrics()
        if self._eval_episodes_per_s == self._eval_episodes_per_s:
            out["time/eval_episodes_per_s"] = self._eval_episodes_per_s
        step_s = out.get("time/step_s")
        if step_s and self._episodes_per_step:
            out["time/episodes_per_s"] = self._episodes_per_step / step_s
        return out
