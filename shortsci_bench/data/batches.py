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

# Changing this changes every published batch sequence (pass permutations, generated steps).
SEED_STRIDE = 1_000_003


def rank_world(trainer) -> tuple[int, int]:
    """(global rank, world size) of a Lightning trainer; (0, 1) outside one."""
    return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)


def start_at_global_step(trainer) -> Callable[[], int]:
    """A stream's `start_step`: read at `iter()` time, not now, so a restore that sets the
    trainer's global step after the loader is built still lands on the right batch."""
    return lambda: trainer.global_step if trainer is not None else 0


def seeded_generator(seed: int, i: int) -> torch.Generator:
    """The generator for pass or step `i` of a stream seeded by `seed`."""
    return torch.Generator().manual_seed(seed * SEED_STRIDE + i)


class SeededSteps:
    """`steps` batches where batch i depends only on the seed and i; subclasses give `batch`.

    `start_step` is read at each `iter()` (from the trainer's global step), so Lightning's
    mid-run restore lands on the right batch. `state_dict`/`load_state_dict` mark it as
    resumable for Lightning; the position itself comes from the global step.
    """

    # What a checkpoint records and must agree on to resume this stream.
    resume_keys: tuple[str, ...] = ("seed",)

    def __init__(self, steps: int, seed: int, start_step: Callable[[], int] = lambda: 0):
        self.steps, self.seed, self.start_step = steps, seed, start_step

    def __len__(self) -> int:
        return self.steps

    def batch(self, step: int) -> Any:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Any]:
        for step in range(self.start_step(), self.steps):
            yield self.batch(step)

    # Lightning treats a loader with these two methods as resumable mid-epoch.
    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.resume_keys}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        keys = self.resume_keys
        if state and tuple(state.get(k) for k in keys) != tuple(getattr(self, k) for k in keys):
            what = " or ".join(k.replace("_", " ") for k in keys)
            raise ValueError(f"checkpoint was made with another {what} than this run")


class GeneratedSteps(SeededSteps):
    """Freshly generated batches: batch i is `build(generator seeded by (seed, i))`."""

    def __init__(
        self,
        build: Callable[[torch.Generator], Any],
        steps: int,
        seed: int,
        start_step: Callable[[], int] = lambda: 0,
    ):
        super().__init__(steps, seed, start_step)
        self.build = build

    def batch(self, step: int) -> Any:
        return self.build(seeded_generator(self.seed, step))


class ShuffledSteps(SeededSteps):
    """Batch i is slice i of a concatenation of seeded permutations of `n` items, so items
    are drawn without replacement within each pass; subclasses turn `indices` into a batch.

    Under DDP each of `world_size` processes takes its slice of one global batch, so
    `batch_size` is per device (Lightning's convention) and the ranks never overlap.
    """

    resume_keys = ("seed", "batch_size")

    def __init__(
        self,
        n: int,
        batch_size: int,
        steps: int,
        seed: int,
        start_step: Callable[[], int] = lambda: 0,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
    ):
        super().__init__(steps, seed, start_step)
        self.n, self.batch_size, self.device = n, batch_size, device
        self.rank, self.world_size = rank, world_size
        self.global_batch = batch_size * world_size
        if self.global_batch > n:
            raise ValueError(
                f"batch_size {batch_size} x {world_size} devices is larger than the training set ({n})"
            )
        self.per_pass = n // self.global_batch if drop_last else -(-n // self.global_batch)
        self._perm_cache: tuple[int, torch.Tensor] | None = None

    def _perm(self, epoch: int) -> torch.Tensor:
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            perm = torch.randperm(self.n, generator=seeded_generator(self.seed, epoch))
            self._perm_cache = (epoch, perm.to(self.device))
        return self._perm_cache[1]

    def indices(self, step: int) -> torch.Tensor:
        epoch, k = divmod(step, self.per_pass)
        start = k * self.global_batch + self.rank * self.batch_size
        return self._perm(epoch)[start : start + self.batch_size]


class TrainStream(ShuffledSteps):
    """`steps` batches of `batch_size` rows of in-memory `tensors` (see `ShuffledSteps`);
    `transform(first tensor, generator seeded by (seed, step))` runs on each batch."""

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
        super().__init__(
            len(tensors[0]), batch_size, steps, seed, start_step, drop_last, rank, world_size,
            device=tensors[0].device,
        )  # fmt: skip
        self.tensors, self.transform = tensors, transform

    def batch(self, step: int) -> tuple[torch.Tensor, ...]:
        idx = self.indices(step)
        out = tuple(t[idx] for t in self.tensors)
        if self.transform is not None:
            g = torch.Generator().manual_seed(self.seed * 7_919 + step)
            out = (self.transform(out[0], g), *out[1:])
        return out


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


def train_stream(datamodule, tensors: tuple[torch.Tensor, ...], **kwargs) -> TrainStream:
    """A datamodule's training stream: its batch size, steps and seed, started at the
    trainer's global step and sharded by the trainer's rank."""
    trainer = getattr(datamodule, "trainer", None)
    rank, world = rank_world(trainer)
    return TrainStream(
        tensors, datamodule.batch_size, datamodule.steps, datamodule.seed,
        start_step=start_at_global_step(trainer), rank=rank, world_size=world, **kwargs,
    )  # fmt: skip


def sharded_eval(datamodule, tensors: tuple[torch.Tensor, ...]) -> EvalBatches:
    """Evaluation during training: under DDP each rank scores its share and the task sums
    the counts across ranks."""
    rank, world = rank_world(getattr(datamodule, "trainer", None))
    return EvalBatches(tensors, datamodule.eval_batch_size, rank, world)
