"""The index's forest plot: every judged claim's interval against the region that would
reproduce it, on one standardised axis.

Claims measure different things (accuracy, loss, a paired difference), so each row is put
in units of its own seed standard deviation, measured from its decision boundary (the
target, the margin or the threshold): x = (value - boundary) / std. That is the usual
standardised effect size (Cohen's d against the boundary). Orderings are already oriented
(positive = the claimed direction), a property with `<` is flipped so that the claimed side
is always to the right, and a value claim's acceptance band is target +- tolerance. The
verdict itself never comes from this picture: it only shows what the rules decided.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from shortsci_bench.collect.verdicts import ClaimResult

MAX_ABS = 12.0  # standardised units shown; a row beyond is clipped and marked with an arrow


@dataclass(frozen=True)
class ForestRow:
    """One judged claim on the standardised axis: its interval, estimate and the region
    of x where a whole interval would reproduce it (`accept_low`..`accept_high`)."""

    label: str
    verdict: str
    low: float
    estimate: float
    high: float
    accept_low: float
    accept_high: float


def forest_row(result: ClaimResult, claim) -> ForestRow | None:
    """The row of a judged claim, or None when it has no interval or no seed spread."""
    v = result.verdict
    if not v.judged or v.estimate is None or v.gap is None or v.ci_low is None:
        return None
    if v.std is None or not v.std > 0 or not math.isfinite(v.std):
        return None
    boundary = v.estimate - v.gap
    sign = 1.0
    lo_acc, hi_acc = 0.0, math.inf
    if result.kind == "property" and getattr(claim, "op", None) in ("<", "<="):
        sign = -1.0
    elif result.kind == "value":
        tol = _value_tolerance(claim, v)
        lo_acc, hi_acc = -tol / v.std, tol / v.std

    def z(value: float) -> float:
        return sign * (value - boundary) / v.std

    lo, hi = sorted((z(v.ci_low), z(v.ci_high)))
    return ForestRow(
        label=f"{result.claim} [{v.tier}]",
        verdict=v.verdict,
        low=lo,
        estimate=z(v.estimate),
        high=hi,
        accept_low=lo_acc,
        accept_high=hi_acc,
    )


def _value_tolerance(claim, v) -> float:
    from shortsci_bench.collect.verdicts import ValueRule

    try:
        return float(ValueRule.tolerance(claim)[0])
    except Exception:  # a claim without a usable tolerance: an empty band
        return 0.0


def draw_forest(rows: list[ForestRow], colours: dict[str, str]) -> bytes:
    """A PNG forest plot: a row per claim (interval, estimate), the acceptance region in
    green, the boundary at 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height = 1.0 + 0.28 * max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(9.0, height), dpi=100)
    try:
        ax.axvline(0.0, color="#57606a", linewidth=0.8)
        for i, r in enumerate(rows):
            y = len(rows) - 1 - i
            a_lo = max(r.accept_low, -MAX_ABS)
            a_hi = min(r.accept_high, MAX_ABS)
            if a_hi > a_lo:
                ax.fill_between([a_lo, a_hi], y - 0.4, y + 0.4, color="#dafbe1", linewidth=0)
            colour = colours.get(r.verdict, "#6e7781")
            lo, hi = max(r.low, -MAX_ABS), min(r.high, MAX_ABS)
            ax.plot([lo, hi], [y, y], color=colour, linewidth=2)
            est = min(max(r.estimate, -MAX_ABS), MAX_ABS)
            ax.plot([est], [y], "o", color=colour, markersize=4)
            if r.high > MAX_ABS:
                ax.annotate("", (MAX_ABS, y), (MAX_ABS - 0.8, y), arrowprops={"arrowstyle": "->"})
            if r.low < -MAX_ABS:
                ax.annotate("", (-MAX_ABS, y), (-MAX_ABS + 0.8, y), arrowprops={"arrowstyle": "->"})
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([r.label for r in reversed(rows)], fontsize=7)
        ax.set_xlim(-MAX_ABS - 0.5, MAX_ABS + 0.5)
        ax.set_ylim(-0.8, len(rows) - 0.2)
        ax.set_xlabel(
            "(value - boundary) / seed std, claimed side to the right; green: where a whole "
            "interval reproduces",
            fontsize=8,
        )
        ax.grid(axis="x", alpha=0.3)
        handles = [
            plt.Line2D([], [], color=colours.get(k, "#6e7781"), linewidth=2, label=k)
            for k in sorted({r.verdict for r in rows})
        ]
        if handles:
            ax.legend(handles=handles, fontsize=7, loc="lower right")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


__all__ = ["ForestRow", "draw_forest", "forest_row"]
