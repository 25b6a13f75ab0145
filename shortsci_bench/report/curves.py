"""Learning curves from run records' `history`: per arm, the mean over seeds and a band.

matplotlib is imported inside `draw_curves` (with the Agg backend, no display needed):
the collector and the catalogue never pay for it.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass

from shortsci_bench.runs.record import RunRecord

X_KEYS = ("step", "epoch")  # axes, not metrics


@dataclass
class Curve:
    """One arm's curve of one metric: x, mean, band low/high over seeds, and n seeds."""

    arm: str
    x: list[float]
    mean: list[float]
    low: list[float]
    high: list[float]
    n_seeds: int


def history_metrics(records: Iterable[RunRecord]) -> list[str]:
    """Metric names that appear in any history entry, axes excluded, sorted."""
    names = {k for r in records for h in r.history for k in h}
    return sorted(names - set(X_KEYS))


def arm_curve(arm: str, records: list[RunRecord], metric: str) -> Curve | None:
    """Mean and min-max band over seeds at each `step` (entry index if no step).

    Seeds may be evaluated at different steps (e.g. one diverged early); each x uses
    the seeds that have it.
    """
    per_x: dict[float, list[float]] = {}
    seeds = 0
    for r in records:
        used = False
        for i, h in enumerate(r.history):
            v = h.get(metric)
            if v is None or not math.isfinite(v):
                continue
            x = float(h.get("step", i))
            per_x.setdefault(x, []).append(float(v))
            used = True
        seeds += used
    if not per_x:
        return None
    xs = sorted(per_x)
    return Curve(
        arm=arm,
        x=xs,
        mean=[math.fsum(per_x[x]) / len(per_x[x]) for x in xs],
        low=[min(per_x[x]) for x in xs],
        high=[max(per_x[x]) for x in xs],
        n_seeds=seeds,
    )


def draw_curves(curves: list[Curve], title: str, ylabel: str) -> bytes:
    """A PNG of the curves: a line per arm (mean) and a shaded seed band (min to max)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.4), dpi=100)
    try:
        for c in curves:
            (line,) = ax.plot(c.x, c.mean, label=f"{c.arm} (n={c.n_seeds})", linewidth=1.5)
            if c.n_seeds > 1:
                ax.fill_between(c.x, c.low, c.high, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def png_data_uri(png: bytes) -> str:
    """Embed a PNG in HTML so the report opens from disk as one file per page."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
