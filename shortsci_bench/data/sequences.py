"""Batches of variable-length sequences as a function of (seed, step), so resume is exact.

The same principle as `batches.TrainStream`: batch i depends only on the seed and i, and
the first batch of an `iter()` is read from the trainer's global step. Sequences are padded
per batch; lengths travel beside them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

Batch = dict[str, torch.Tensor]


def pad_sequences(
    seqs: Sequence[torch.Tensor], value: float = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (len_i, ...) tensors into (n, max_len, ...) padded with `value`; return lengths too."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    longest = int(lengths.max()) if len(seqs) else 0
    first = seqs[0]
    out = torch.full((len(seqs), longest, *first.shape[1:]), value, dtype=first.dtype)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, lengths


class SequenceStream:
    """`steps` batches of `batch_size` items drawn without replacement within each pass over
    `n_items`; `collate(indices)` builds a batch. Resumable like `TrainStream`."""

    def __init__(
        self,
        n_items: int,
        batch_size: int,
        steps: int,
        seed: int,
        collate: Callable[[torch.Tensor], Batch],
        start_step: Callable[[], int] = lambda: 0,
    ):
        if batch_size > n_items:
            raise ValueError(f"batch_size {batch_size} is larger than the training set ({n_items})")
        self.n, self.batch_size, self.steps, self.seed = n_items, batch_size, steps, seed
        self.collate, self.start_step = collate, start_step
        self.per_pass = n_items // batch_size
        self._perm_cache: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        return self.steps

    def indices(self, step: int) -> torch.Tensor:
        epoch, k = divmod(step, self.per_pass)
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm_cache = (epoch, torch.randperm(self.n, generator=g))
        return self._perm_cache[1][k * self.batch_size : (k + 1) * self.batch_size]

    def batch(self, step: int) -> Batch:
        return self.collate(self.indices(step))

    def __iter__(self) -> Iterator[Batch]:
        for step in range(self.start_step(), self.steps):
            yield self.batch(step)

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state and (state.get("seed"), state.get("batch_size")) != (self.seed, self.batch_size):
            raise ValueError("checkpoint was made with another seed or batch size than this run")


class GeneratedStream:
    """`steps` batches of freshly generated data: batch i = make(generator seeded by (seed, i))."""

    def __init__(
        self,
        make: Callable[[torch.Generator], Batch],
        steps: int,
        seed: int,
        start_step: Callable[[], int] = lambda: 0,
    ):
        self.make, self.steps, self.seed, self.start_step = make, steps, seed, start_step

    def __len__(self) -> int:
        return self.steps

    def batch(self, step: int) -> Batch:
        return self.make(torch.Generator().manual_seed(self.seed * 1_000_003 + step))

    def __iter__(self) -> Iterator[Batch]:
        for step in range(self.start_step(), self.steps):
            yield self.batch(step)

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state and state.get("seed") != self.seed:
            raise ValueError("checkpoint was made with another seed than this run")


class FixedBatches:
    """Fixed-order batches over an evaluation set (`collate(indices)` builds each)."""

    def __init__(self, n_items: int, batch_size: int, collate: Callable[[torch.Tensor], Batch]):
        self.n, self.batch_size, self.collate = n_items, batch_size, collate

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        for i in range(0, self.n, self.batch_size):
            yield self.collate(torch.arange(i, min(i + self.batch_size, self.n)))
