"""The Neural Transducer's toy task: adding two numbers of up to three decimal digits.

Jaitly et al. (2016), section 4.1: "adding two three-digit decimal numbers. The second
number is presented in the reverse order, and so is the target output. Thus the model can
produce the first output as soon as the first digit of the second number is observed."
The paper's examples (`2 + 725 <s>` -> `925`, `227 + 3 <s>` -> `032`) show numbers of one to
three digits and an end-of-input symbol; so here each number is uniform on 0..999, the
input is `a + reversed(b) <end>` as one-hot vectors (12 symbols: 10 digits, `+`, end) and
the target is the digits of reversed(str(a + b)). Training data are fresh sums for every
step (batch i drawn from a generator seeded by (seed, i)); the validation and test sets
are pinned (seeded apart from the run seed, so every seed is scored on the same sums).
"""

from __future__ import annotations

import lightning as L
import torch

from shortsci_bench.data.batches import GeneratedSteps, start_at_global_step
from shortsci_bench.data.sequences import Batch, FixedBatches, pad_sequences

PLUS, END = 10, 11
N_INPUT_SYMBOLS = 12
SYMBOLS = tuple("0123456789")


def encode_sum(a: int, b: int) -> tuple[list[int], list[int]]:
    """Input tokens `a + reversed(b) <end>` and target digits reversed(a + b)."""
    tokens = [int(c) for c in str(a)] + [PLUS] + [int(c) for c in reversed(str(b))] + [END]
    return tokens, [int(c) for c in reversed(str(a + b))]


def make_batch(pairs: torch.Tensor) -> Batch:
    """(B, 2) operand pairs -> a padded batch (one-hot inputs, digit targets)."""
    xs, ys = [], []
    for a, b in pairs.tolist():
        tokens, target = encode_sum(a, b)
        xs.append(torch.nn.functional.one_hot(torch.tensor(tokens), N_INPUT_SYMBOLS).float())
        ys.append(torch.tensor(target, dtype=torch.long))
    x, x_len = pad_sequences(xs)
    y, y_len = pad_sequences(ys)
    return {
        "x": x,
        "x_len": x_len,
        "y": y,
        "y_len": y_len,
        "idx": torch.zeros(len(xs), dtype=torch.long),
    }


class AdditionDataModule(L.LightningDataModule):
    """Fresh training sums every step; pinned validation and test sums."""

    name = "addition"
    stub = False
    symbols = SYMBOLS

    def __init__(
        self,
        batch_size: int = 32,
        eval_batch_size: int = 1000,
        steps: int = 1000,
        seed: int = 0,
        max_value: int = 999,
        n_val: int = 1000,
        n_test: int = 1000,
        eval_seed: int = 2016,
        feature_dim: int = N_INPUT_SYMBOLS,
        n_classes: int = 10,
    ):
        super().__init__()
        if feature_dim != N_INPUT_SYMBOLS or n_classes != 10:
            raise ValueError(f"addition has {N_INPUT_SYMBOLS} input symbols and 10 output digits")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.steps, self.seed, self.max_value = steps, seed, max_value
        self.n_val, self.n_test, self.eval_seed = n_val, n_test, eval_seed
        self.pairs: dict[str, torch.Tensor] = {}

    @property
    def score_map(self) -> torch.Tensor:
        return torch.arange(10)

    def _pairs(self, n: int, g: torch.Generator) -> torch.Tensor:
        return torch.randint(0, self.max_value + 1, (n, 2), generator=g)

    def setup(self, stage: str | None = None) -> None:
        if self.pairs:
            return
        self.pairs["dev"] = self._pairs(self.n_val, torch.Generator().manual_seed(self.eval_seed))
        self.pairs["test"] = self._pairs(
            self.n_test, torch.Generator().manual_seed(self.eval_seed + 1)
        )

    def train_dataloader(self) -> GeneratedSteps:
        trainer = self.trainer
        return GeneratedSteps(
            lambda g: make_batch(self._pairs(self.batch_size, g)),
            self.steps,
            self.seed,
            start_step=start_at_global_step(trainer),
        )

    def _eval_batches(self, split: str) -> FixedBatches:
        pairs = self.pairs[split]

        def collate(idx: torch.Tensor) -> Batch:
            batch = make_batch(pairs[idx])
            batch["idx"] = idx.clone()
            return batch

        return FixedBatches(len(pairs), self.eval_batch_size, collate)

    def val_dataloader(self) -> FixedBatches:
        return self._eval_batches("dev")

    def test_batches(self) -> FixedBatches:
        return self._eval_batches("test")

    def references(self, split: str) -> list[list[int]]:
        return [encode_sum(a, b)[1] for a, b in self.pairs[split].tolist()]

    def provenance(self) -> dict:
        return {
            "dataset": self.name,
            "stub": False,
            "source": "generated: uniform operands 0..max_value, second operand and sum reversed",
            "max_value": self.max_value,
            "n_val": self.n_val,
            "n_test": self.n_test,
            "eval_seed": self.eval_seed,
        }
