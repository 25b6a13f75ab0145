"""The associative retrieval task of Ba et al., "Using Fast Weights to Attend to the Recent
Past" (NIPS 2016), section 4.1: `c9k8j3f1??c` -> 9.

Each string holds K letter-digit pairs with K distinct letters (digits may repeat), then
the separator `??`, then a query letter drawn from the K letters; the answer is the
query's digit (10 classes). Strings are generated from a seed, held as token tensors and
pinned by a SHA-256 of their bytes: a change in the generator (or in numpy's random
streams) fails loudly instead of silently changing the task.
"""

from __future__ import annotations

import hashlib
import string
import time

import lightning as L
import numpy as np
import torch

from shortsci_bench.data.batches import EvalBatches, TrainStream, sharded_eval, train_stream

LETTERS = string.ascii_lowercase
VOCAB = LETTERS + string.digits + "?"  # 37 symbols: letters 0-25, digits 26-35, '?' 36
DIGIT0 = len(LETTERS)
QUERY_MARK = len(VOCAB) - 1
SPLITS = ("train", "val", "test")
# A separate stream per split, so the validation and test sets do not depend on the
# training set's size.
SPLIT_OFFSET = {"train": 0, "val": 1, "test": 2}

# SHA-256 of (tokens, answers) for the splits the configs use; generator settings not
# listed here are generated and recorded, just not checked against a pin.
# Keys: (n_pairs, data_seed, split, size).
PINNED_SHA256: dict[tuple[int, int, str, int], str] = {
    (8, 0, "train", 100_000): "70133e02900bc7081619970aa840c48e8c00cda9b7e3144a71388221fcaf3c46",
    (8, 0, "val", 10_000): "2046ee8b8e3a1761205500166d0e8f427d3cd96dbe8b4d9524305f94d939884c",
    (8, 0, "test", 20_000): "d8ec1880a230cd5fc342e00559bb58d96b4b50c78bd3d428c80ad4ff13e0165b",
}


def generate_assoc_retrieval(n: int, n_pairs: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` strings of `n_pairs` pairs: tokens (n, 2 * n_pairs + 3) int64 and answers (n,)
    in 0-9. Vectorised: distinct letters come from argsort of uniform noise."""
    if not 1 <= n_pairs <= len(LETTERS):
        raise ValueError(f"n_pairs={n_pairs}: need 1 to {len(LETTERS)} distinct letters")
    rng = np.random.default_rng(seed)
    letters = np.argsort(rng.random((n, len(LETTERS))), axis=1)[:, :n_pairs]
    digits = rng.integers(0, 10, size=(n, n_pairs))
    which = rng.integers(0, n_pairs, size=n)
    rows = np.arange(n)
    tokens = np.empty((n, 2 * n_pairs + 3), dtype=np.int64)
    tokens[:, 0 : 2 * n_pairs : 2] = letters
    tokens[:, 1 : 2 * n_pairs : 2] = DIGIT0 + digits
    tokens[:, 2 * n_pairs] = QUERY_MARK
    tokens[:, 2 * n_pairs + 1] = QUERY_MARK
    tokens[:, 2 * n_pairs + 2] = letters[rows, which]
    answers = digits[rows, which].astype(np.int64)
    return torch.from_numpy(tokens), torch.from_numpy(answers)


def decode(tokens: torch.Tensor) -> str:
    """One string as text, e.g. `c9k8j3f1??c`."""
    return "".join(VOCAB[int(t)] for t in tokens)


def split_sha256(tokens: torch.Tensor, answers: torch.Tensor) -> str:
    h = hashlib.sha256()
    h.update(tokens.numpy().astype("<i8").tobytes())
    h.update(answers.numpy().astype("<i8").tobytes())
    return h.hexdigest()


class AssociativeRetrievalDataModule(L.LightningDataModule):
    """Train/validation/test strings as token tensors on the training device.

    Validation (`val_dataloader`) runs during training; the test set is read once at the
    end (`test_dataloader`), as in the paper's table.
    """

    name = "associative_retrieval"

    def __init__(
        self,
        n_pairs: int = 8,
        n_train: int = 100_000,
        n_val: int = 10_000,
        n_test: int = 20_000,
        data_seed: int = 0,
        batch_size: int = 128,
        eval_batch_size: int = 10_000,
        steps: int = 1000,
        seed: int = 0,
        eval_subset: int | None = None,
    ):
        super().__init__()
        self.n_pairs, self.data_seed = n_pairs, data_seed
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.steps, self.seed, self.eval_subset = steps, seed, eval_subset
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.sha256: dict[str, str] = {}
        self.pinned: dict[str, bool] = {}
        self.load_seconds = 0.0

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        t0 = time.perf_counter()
        for split in SPLITS:
            n = self.sizes[split]
            tokens, answers = generate_assoc_retrieval(
                n, self.n_pairs, self.data_seed * 10 + SPLIT_OFFSET[split]
            )
            digest = split_sha256(tokens, answers)
            pin = PINNED_SHA256.get((self.n_pairs, self.data_seed, split, n))
            if pin is not None and pin != digest:
                raise RuntimeError(
                    f"associative retrieval {split} split (K={self.n_pairs}, data_seed="
                    f"{self.data_seed}, n={n}) has SHA-256 {digest}, but {pin} is pinned: "
                    "the generator or numpy's random streams changed"
                )
            self.sha256[split], self.pinned[split] = digest, pin is not None
            if split != "train" and self.eval_subset:
                tokens, answers = tokens[: self.eval_subset], answers[: self.eval_subset]
            self.splits[split] = (tokens, answers)
        self.load_seconds = time.perf_counter() - t0

    def _on_device(self, split: str) -> tuple[torch.Tensor, ...]:
        trainer = getattr(self, "trainer", None)
        dev = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        return tuple(t.to(dev) for t in self.splits[split])

    def train_dataloader(self) -> TrainStream:
        return train_stream(self, self._on_device("train"))

    def val_dataloader(self) -> EvalBatches:
        return sharded_eval(self, self._on_device("val"))

    def test_dataloader(self) -> EvalBatches:
        # Read once at the end by the task, whole on every rank.
        return EvalBatches(self._on_device("test"), self.eval_batch_size)

    def provenance(self) -> dict:
        return {
            "dataset": "associative_retrieval",
            "source": "generated: experiments.fast_weights.data."
            f"generate_assoc_retrieval(n_pairs={self.n_pairs}, data_seed={self.data_seed})",
            "checksums": {f"{k}.sha256": v for k, v in self.sha256.items()},
            "checksums_pinned": self.pinned,
            "n_pairs": self.n_pairs,
            "sizes": self.sizes,
            "eval_subset": self.eval_subset,
            "example": decode(self.splits["train"][0][0]) if self.splits else None,
        }
