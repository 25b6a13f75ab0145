"""What tasks and the run path may ask of a datamodule, stated as Protocols.

Every datamodule is a `lightning.LightningDataModule`. On top of that, the run path and
the tasks rely on the hooks below; a task that needs one names the Protocol in its
`isinstance` check or type hints, and a datamodule that offers one implements it exactly.

The training stream contract (all datamodules): batch i of a run depends only on the
run's seed and i, and the stream starts at `trainer.global_step` when iterated
(`shortsci_bench.data.batches`), so a resumed run sees the batches an uninterrupted one
would. One global step is one batch (`shortsci_bench.tasks.base.HarnessTask`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class HasProvenance(Protocol):
    """Where the data came from, for the run record: `source`, checksums, `stub`, `notes`."""

    def provenance(self) -> dict[str, Any]: ...


@runtime_checkable
class HasTestSplit(Protocol):
    """A held-out test split scored once at the end, apart from the validation split."""

    def test_dataloader(self) -> Any: ...


@runtime_checkable
class HasProbeBatch(Protocol):
    """A fixed batch for probes at initialisation (e.g. gradient flow in the BN-LSTM)."""

    def probe_batch(self, n: int, full_length: bool = False) -> tuple[torch.Tensor, torch.Tensor]: ...


@runtime_checkable
class HasStatisticsBatches(Protocol):
    """Training batches for re-estimating population statistics (batch norm)."""

    def statistics_batches(self, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]: ...


@runtime_checkable
class HasTrainClasses(Protocol):
    """The number of training classes, for a classifier head sized by the data."""

    @property
    def n_train_classes(self) -> int: ...
