"""A bare Lightning trainer that times its training steps, shared by the bench scripts
(the harness's step measured without logging, checkpoints, progress bar or validation)."""

from __future__ import annotations

import time

import lightning as L
import torch


class StepTimer(L.Callback):
    """Training time from step `skip` on (skip=1: the first step pays for lazy set-up and
    kernel selection); on a GPU, synchronised so queued kernels are counted."""

    def __init__(self, skip: int = 0):
        self.skip = skip

    @staticmethod
    def _now() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.skip and not hasattr(self, "t0"):
            self.t0 = self._now()

    def on_train_end(self, trainer, pl_module):
        self.seconds = self._now() - self.t0
        self.steps = trainer.global_step - self.skip


def timed_trainer(steps: int, accelerator: str = "cpu", skip: int = 0):
    """(trainer, timer): `steps` training steps, nothing else."""
    timer = StepTimer(skip)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        max_steps=steps,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    return trainer, timer
