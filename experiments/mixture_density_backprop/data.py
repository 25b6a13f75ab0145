"""No data: the study draws its own mixtures and samples from the seed."""

from __future__ import annotations

from shortsci_bench.data import nodata


class SingleStepDataModule(nodata.SingleStepDataModule):
    source = "generated from the seed"
