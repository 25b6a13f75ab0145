"""Architectural measures of the network's cell graph, and training on a long-dependency task.

An evaluate-only task (`fit_free`, its own loop like
`experiments/deep_linear_no_poor_minima/task.py`): the one validation pass computes the
recurrent depth, feedforward depth and recurrent skip coefficient of the trained network's
cell graph (measures.py), then trains it with Adam on `steps` batches of the bit-memory
task (data.py; batch i drawn from (seed, i)) with the logistic loss, evaluating test
accuracy every `eval_every` steps (chance: 1/2). `test/steps_to_solve` is the first
evaluated step with test accuracy at least `solved_acc`.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from experiments.rnn_architectural_complexity.measures import measures
from experiments.rnn_architectural_complexity.model import SkipRNN
from shortsci_bench.tasks.base import HarnessTask


class AddingTask(HarnessTask):
    fit_free = True  # run.py calls trainer.validate: the loop below is the training

    def __init__(
        self,
        model: SkipRNN,
        optimizer,
        scheduler=None,
        steps: int = 2000,
        eval_every: int = 100,
        clip: float = 1.0,
        solved_acc: float = 0.99,
        mean_over_history: tuple[str, ...] = (),
    ):
        super().__init__(optimizer, scheduler, mean_over_history)
        self.model = model
        self.steps, self.eval_every = int(steps), int(eval_every)
        self.clip, self.solved_acc = float(clip), float(solved_acc)

    def validation_step(self, batch, batch_idx):
        x_test, y_test = batch
        for k, v in measures(self.model.cell_graph()).items():
            self.final_extra[f"measures/{k}"] = v
        dm = self.trainer.datamodule
        opt = self.optimizer_factory(params=self.model.parameters())
        self.evaluate(x_test, y_test, 0, float("nan"))
        t0 = time.perf_counter()
        window = []
        with torch.enable_grad():  # validation runs under no_grad (trainer.inference_mode=false)
            self.model.train()
            for step in range(1, self.steps + 1):
                x, y = dm.train_batch(step - 1)
                loss = F.binary_cross_entropy_with_logits(self.model(x), y)
                if not torch.isfinite(loss):
                    self.stop_diverged(f"non-finite training loss at step {step}")
                    break
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
                opt.step()
                self._train_steps += 1
                window.append(float(loss.detach()))
                if step % self.eval_every == 0 or step == self.steps:
                    self._train_seconds = time.perf_counter() - t0
                    self.evaluate(x_test, y_test, step, sum(window) / len(window))
                    window = []
        self._train_seconds = time.perf_counter() - t0
        solved = [r["step"] for r in self.history if r["test/acc"] >= self.solved_acc]
        self.final_extra["test/steps_to_solve"] = (
            float(solved[0]) if solved else float(self.steps + 1)
        )

    def evaluate(self, x, y, step: int, train_loss: float) -> None:
        self.model.eval()
        with torch.no_grad():
            logits = self.model(x)
            acc = float(((logits > 0).float() == y).float().mean())
            nll = float(F.binary_cross_entropy_with_logits(logits, y))
        self.model.train()
        row = {
            "step": float(step),
            "test/acc": acc,
            "test/nll": nll,
            "train/loss_window": train_loss,
        }
        self.history.append(row)
        for logger in self.loggers:
            logger.log_metrics({k: v for k, v in row.items() if k != "step"}, step=step)
