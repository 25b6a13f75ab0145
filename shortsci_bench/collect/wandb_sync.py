"""Mirror the verdict table to Weights & Biases as a `wandb.Table`.

wandb is imported only here and only when asked for (`--wandb`): it is slow to import
and the collector must work without it. WANDB_MODE (online, offline, disabled) is
respected as wandb itself reads it; tests run with WANDB_MODE=disabled or offline.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from shortsci_bench.collect.tables import CSV_COLUMNS, verdict_row

if TYPE_CHECKING:
    from shortsci_bench.collect import Collection

DEFAULT_PROJECT = "shortsci_bench"


def push_verdicts(collection: Collection, project: str | None = None) -> str | None:
    """Log the verdicts (one row per verdict, indicative included) and the per-arm
    aggregates as two tables in one `collect` run; return the run's id (None if disabled)."""
    import wandb

    run = wandb.init(
        project=project or os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT),
        job_type="collect",
        config={"records": len(collection.records)},
    )
    try:
        verdicts = wandb.Table(columns=CSV_COLUMNS)
        for v in collection.verdicts():
            row = verdict_row(v)
            verdicts.add_data(*[row[c] for c in CSV_COLUMNS])
        aggregates = collection.aggregates()
        agg_columns = list(aggregates[0].as_dict()) if aggregates else ["experiment"]
        agg_table = wandb.Table(columns=agg_columns)
        for a in aggregates:
            d = a.as_dict()
            agg_table.add_data(*[d[c] for c in agg_columns])
        run.log({"verdicts": verdicts, "aggregates": agg_table})
        return getattr(run, "id", None)
    finally:
        run.finish()
