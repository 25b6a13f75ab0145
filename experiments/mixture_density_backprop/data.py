"""No data: the study draws its own mixtures and samples from the seed. The datamodule
hands the evaluate-only task one placeholder batch so that `trainer.validate` calls its
`validation_step` exactly once."""

from __future__ import annotations

import lightning as L
import torch

from shortsci_bench.data.batches import EvalBatches


class SingleStepDataModule(L.LightningDataModule):
    name = "none"

    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = int(seed)

    def val_dataloader(self) -> EvalBatches:
        return EvalBatches((torch.zeros(1),), 1)

    def provenance(self) -> dict:
        return {"dataset": "none", "source": "generated from the seed", "seed": self.seed}
