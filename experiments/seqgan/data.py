"""SeqGAN's synthetic data come from the oracle inside the model container
(`model.SeqGANModels`); the datamodule only hands the evaluate-only task one placeholder
batch and records the settings."""

from __future__ import annotations

import lightning as L
import torch


class OracleDataModule(L.LightningDataModule):
    name = "oracle_lstm"

    def __init__(self, n_train: int = 10_000, n_eval: int = 10_000, seed: int = 0):
        super().__init__()
        self.n_train, self.n_eval, self.seed = int(n_train), int(n_eval), int(seed)

    def val_dataloader(self):
        return [(torch.zeros(1),)]

    def provenance(self) -> dict:
        return {
            "dataset": "oracle_lstm",
            "source": "experiments.seqgan.model.oracle (a random LSTM, generated per seed)",
            "n_train": self.n_train,
            "n_eval": self.n_eval,
            "seed": self.seed,
        }
