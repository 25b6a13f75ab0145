"""No data: for studies that compute over their own state spaces or draw their own samples
from the seed (exact computations, estimator checks). The datamodule hands an evaluate-only
task one placeholder batch so that `trainer.validate` calls its `validation_step` exactly
once."""

from __future__ import annotations

import lightning as L
import torch

from shortsci_bench.data.batches import EvalBatches


class SingleStepDataModule(L.LightningDataModule):
    name = "none"
    source = "none"  # what the study computes over, for the record (a subclass says)

    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = int(seed)

    def val_dataloader(self) -> EvalBatches:
        return EvalBatches((torch.zeros(1),), 1)

    def provenance(self) -> dict:
        return {"dataset": "none", "source": self.source, "seed": self.seed}
