"""Batches from tensors held in memory (on the training device), without per-item Python.

The training stream is a function of (seed, global step): batch i is slice i of a
concatenation of seeded permutations. A run resumed from a checkpoint therefore sees
exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]



def rank_world(trainer) -> tuple[int, int]:
    """(global rank, world size) of a Lightning trainer; (0, 1) outside one."""
    return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

class TrainStream:
    """`steps` batches of `batch_size`, drawn without replacement within each pass.

    `start_step` is read at each `iter()` (from the trainer's global step), so Lightning's
    mid-run restore lands on the right batch. `state_dict`/`load_state_dict` mark it as
    resumable for Lightning; the position itself comes from the global step.
    """

    def __init__(
        self,
        tensors: tuple[torch.Tensor, ...],
        batch_size: int,
        steps: int,
        seed: int,
        start_step: Callable[[], int] = lambda: 0,
        transform: Transform | None = None,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.tensors = tensors
        self.n = len(tensors[0])
        # Under DDP each of `world_size` processes takes its slice of one global batch, so
        # `batch_size` is per device (Lightning's convention) and the ranks never overlap.
        self.rank, self.world_size = rank, world_size
        self.global_batch = batch_size * world_size
        if self.global_batch > self.n:
            raise ValueError(
                f"batch_size {batch_size} x {world_size} devices is larger than the training set ({self.n})"
            )
        self.batch_size = batch_size
        self.steps = steps
        self.seed = seed
        self.start_step = start_step
        self.transform = transform
        self.per_pass = (
            self.n // self.global_batch if drop_last else -(-self.n // self.global_batch)
        )
        self._perm_cache: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        return self.steps

    def _perm(self, epoch: int) -> torch.Tensor:
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(self.n, generator=g).to(self.tensors[0].device)
            self._perm_cache = (epoch, perm)
        return self._perm_cache[1]

    def batch(self, step: int) -> tuple[torch.Tensor, ...]:
        epoch, k = divmod(step, self.per_pass)
        start = k * self.global_batch + self.rank * self.batch_size
        idx = self._perm(epoch)[start : start + self.batch_size]
        out = tuple(t[idx] for t in self.tensors)
        if self.transform is not None:
            g = torch.Generator().manual_seed(self.seed * 7_919 + step)
            out = (self.transform(out[0], g), *out[1:])
        return out

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        for step in range(self.start_step(), self.steps):
            yield self.batch(step)

    # Lightning treats a loader with these two methods as resumable mid-epoch.
    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state and (state.get("seed"), state.get("batch_size")) != (self.seed, self.batch_size):
            raise ValueError("checkpoint was made with another seed or batch size than this run")


class EvalBatches:
    """Fixed-order batches over a whole evaluation set."""

    def __init__(
        self, tensors: tuple[torch.Tensor, ...], batch_size: int, rank: int = 0, world_size: int = 1
    ):
        # Under DDP each rank scores every world_size-th example; tasks sum counts across ranks.
        if world_size > 1:
            tensors = tuple(t[rank::world_size] for t in tensors)
        self.tensors = tensors
        self.batch_size = batch_size
        self.n = len(tensors[0])

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        for i in range(0, self.n, self.batch_size):
            yield tuple(t[i : i + self.batch_size] for t in self.tensors)
