"""No data: the Gibbs study computes over the models' own state spaces."""

from __future__ import annotations

from shortsci_bench.data import nodata


class SingleStepDataModule(nodata.SingleStepDataModule):
    source = "computed state spaces"
