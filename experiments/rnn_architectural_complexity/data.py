"""A long-dependency task: remember one bit for T steps (a one-symbol copy task).

Each sequence has T steps of two channels. Channel 0 carries the bit as -1 or +1 at the
first step and 0 after it; channel 1 is N(0, 1) noise at every step (a distractor the
network must not let overwrite the bit). The target, read after the last step, is the
bit: chance accuracy is 1/2, and the information must travel T - 1 steps back in time.
(The adding problem, also tried, was not learned by any arm within a CPU budget of a few
hundred steps, so it could not separate them.)

Batch i of a run depends only on (seed, i) (`seeded_generator`), so every arm of one seed
sees the same sequences; the test set is drawn from its own seed.
"""

from __future__ import annotations

import lightning as L
import torch

from shortsci_bench.data.batches import EvalBatches, seeded_generator

TEST_SEED_OFFSET = 10_007  # the test set's seed: seed + offset, disjoint from the training stream


def bit_memory_batch(
    batch: int, length: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    bit = torch.randint(0, 2, (batch,), generator=gen).float()
    x = torch.randn(batch, length, 2, generator=gen)
    x[:, 0, 0] = 2 * bit - 1
    x[:, 1:, 0] = 0.0
    return x, bit[:, None]


class BitMemoryDataModule(L.LightningDataModule):
    """Hands the evaluate-only task its test set; the task draws training batches by step
    with `train_batch`."""

    name = "bit_memory"

    def __init__(self, length: int, batch_size: int, n_test: int, seed: int = 0):
        super().__init__()
        self.length, self.batch_size, self.n_test, self.seed = length, batch_size, n_test, seed

    def train_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return bit_memory_batch(self.batch_size, self.length, seeded_generator(self.seed, step))

    def test_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed + TEST_SEED_OFFSET)
        return bit_memory_batch(self.n_test, self.length, gen)

    def val_dataloader(self) -> EvalBatches:
        x, y = self.test_set()
        return EvalBatches((x, y), self.n_test)

    def provenance(self) -> dict:
        return {
            "dataset": "bit_memory",
            "source": "experiments.rnn_architectural_complexity.data.bit_memory_batch",
            "length": self.length,
            "seed": self.seed,
        }
