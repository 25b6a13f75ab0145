"""Batches of variable-length sequences as a function of (seed, step), so resume is exact.

The same principle as `batches.TrainStream`: batch i depends only on the seed and i, and
the first batch of an `iter()` is read from the trainer's global step. Sequences are padded
per batch; lengths travel beside them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from shortsci_bench.data.batches import GeneratedSteps, ShuffledSteps

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


class SequenceStream(ShuffledSteps):
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
        if batch_size > n_items:  # checked here too: this message names no devices
            raise ValueError(f"batch_size {batch_size} is larger than the training set ({n_items})")
        super().__init__(n_items, batch_size, steps, seed, start_step)
        self.collate = collate

    def batch(self, step: int) -> Batch:
        return self.collate(self.indices(step))


# Freshly generated batches: batch i = make(generator seeded by (seed, i)).


class FixedBatches:
    """Fixed-order batches over an evaluation set (`collate(indices)` builds each)."""

    def __init__(self, n_items: int, batch_size: int, collate: Callable[[torch.Tensor], Batch]):
        self.n, self.batch_size, self.collate = n_items, batch_size, collate

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        for i in range(0, self.n, self.batch_size):
            yield self.collate(torch.arange(i, min(i + self.batch_size, self.n)))
