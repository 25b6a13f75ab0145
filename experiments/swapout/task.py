"""Training a Swapout ResNet and evaluating it both ways (Singh, Hoiem & Forsyth, NIPS 2016).

- Evaluations during training run the deterministic network (masks replaced by their
  expectations): `test/err_det`, `test/acc_det`, `test/loss_det`, and `train/loss`.
- At the end, on the same evaluation set and while the model is still on its device:
  deterministic inference again and stochastic inference, the average of the softmax
  outputs of `stochastic_samples` passes with freshly sampled masks (the paper's
  section 4.3). Both go into the record: `test/err_stoch`, `test/acc_stoch`, the paired
  gap `test/gap_det_minus_stoch` with its standard error over test images, and
  `test/err_stoch_n{k}`, the error of the average of the first k passes (k < N).
  A network without masks (`resnet`) gets `err_stoch = err_det`: its passes are identical.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from shortsci_bench.tasks.train_loss import TrainLossClassificationTask


class SwapoutTask(TrainLossClassificationTask):
    def __init__(
        self,
        model: nn.Module,
        optimizer,
        scheduler=None,
        stochastic_samples: int = 30,
        sample_counts: tuple[int, ...] = (1, 3, 10, 30),
        eval_seed: int = 0,
        eval_prefix: str = "test",
        mean_over_history: tuple[str, ...] = (),
    ):
        super().__init__(
            model,
            optimizer,
            scheduler,
            eval_prefix=eval_prefix,
            mean_over_history=mean_over_history,
        )
        self.stochastic_samples = int(stochastic_samples)
        # error after the first k of the N passes, for how many samples inference needs
        self.sample_counts = [int(k) for k in sample_counts if 0 < int(k) < self.stochastic_samples]
        self.eval_seed = int(eval_seed)

    def record_eval(self, metrics: dict[str, float]) -> None:
        # Validation runs the network in eval mode, i.e. deterministic inference.
        p = f"{self.eval_prefix}/"
        renamed = {f"{k}_det" if k.startswith(p) else k: v for k, v in metrics.items()}
        super().record_eval(renamed)

    def on_train_end(self) -> None:
        if self.diverged:
            return
        loader = self.trainer.val_dataloaders or self.trainer.datamodule.val_dataloader()
        t0 = time.perf_counter()
        self.final_extra.update(self.evaluate_both_ways(loader))
        self.final_extra["time/eval_both_s"] = time.perf_counter() - t0

    @torch.no_grad()
    def evaluate_both_ways(self, loader) -> dict[str, float]:
        """Deterministic and stochastic inference over `loader`, with a fixed mask seed."""
        was_training = self.model.training
        self.model.eval()
        stochastic = getattr(self.model, "is_stochastic", False) and self.stochastic_samples > 0
        det_right, stoch_right = [], []
        partial_right: dict[int, list[torch.Tensor]] = {k: [] for k in self.sample_counts}
        cuda = self.device.type == "cuda"
        devices = [self.device.index or 0] if cuda else []
        try:
            # a fixed mask seed, without disturbing the training RNG streams
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.eval_seed)
                for x, y in loader:
                    p_det = self.model(x).softmax(-1)
                    det_right.append(p_det.argmax(-1) == y)
                    if not stochastic:
                        stoch_right.append(det_right[-1])
                        continue
                    p = torch.zeros_like(p_det)
                    with self.model.stochastic_inference():
                        for i in range(1, self.stochastic_samples + 1):
                            p += self.model(x).softmax(-1)
                            if i in partial_right:
                                partial_right[i].append(p.argmax(-1) == y)
                    stoch_right.append(p.argmax(-1) == y)
        finally:
            self.model.train(was_training)
        det = torch.cat(det_right).float()
        diff = torch.cat(stoch_right).float() - det  # per image: +1 where only stochastic is right
        # sums reduced across DDP ranks (each scores its share of the evaluation set)
        counts = [k for k in self.sample_counts if partial_right[k]]
        sums = torch.stack(
            [
                det.sum(),
                diff.sum(),
                diff.square().sum(),
                torch.tensor(float(det.numel()), device=det.device),
                *[torch.cat(partial_right[k]).float().sum() for k in counts],
            ]
        )
        det_sum, diff_sum, diff_sq, n, *partial = self.trainer.strategy.reduce(
            sums, reduce_op="sum"
        ).tolist()
        acc_det, gap = det_sum / n, diff_sum / n  # gap = err_det - err_stoch
        var = max(diff_sq / n - gap**2, 0.0) * n / max(n - 1, 1)
        se = math.sqrt(var / n)
        acc_stoch = acc_det + gap
        p = self.eval_prefix
        return {
            f"{p}/acc_det": acc_det,
            f"{p}/err_det": 1.0 - acc_det,
            f"{p}/acc_stoch": acc_stoch,
            f"{p}/err_stoch": 1.0 - acc_stoch,
            f"{p}/gap_det_minus_stoch": gap,  # > 0: stochastic inference is better
            f"{p}/gap_det_minus_stoch_se": se,  # paired, over test images
            f"{p}/n_eval": n,
            f"{p}/stoch_samples": float(self.stochastic_samples if stochastic else 1),
            **{f"{p}/err_stoch_n{k}": 1.0 - right / n for k, right in zip(counts, partial)},
        }
