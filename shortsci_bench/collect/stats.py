"""Summary statistics over seeds: mean, sample std, n and a Student-t confidence interval.

The t quantile is computed here (regularized incomplete beta + bisection) rather than
taken from scipy, whose import alone costs more than collecting a thousand records.
Tests check it against `scipy.stats.t.ppf`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

_EPS = 1e-15
_TINY = 1e-300


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    max_iter = 10_000 + int(10 * math.sqrt(max(a, b)))
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, max_iter + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta did not converge (a={a}, b={b}, x={x})")


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0:
        raise ValueError("betainc needs a > 0 and b > 0")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # The continued fraction converges fast only on one side of the mean; use symmetry.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """Upper tail P(T > t) of Student's t with `df` degrees of freedom."""
    if df <= 0:
        raise ValueError("df must be positive")
    if t == 0.0:
        return 0.5
    # Computed directly as a tail (not 1 - cdf) so small tail probabilities stay accurate.
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t > 0 else 1.0 - tail


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) of Student's t with `df` degrees of freedom."""
    return 1.0 - t_sf(t, df)


@lru_cache(maxsize=1024)
def t_ppf(q: float, df: float) -> float:
    """Quantile of Student's t: the t with P(T <= t) = q. Matches scipy.stats.t.ppf."""
    if not 0.0 < q < 1.0:
        raise ValueError("q must lie strictly between 0 and 1")
    if df <= 0:
        raise ValueError("df must be positive")
    if q == 0.5:
        return 0.0
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    tail = 1.0 - q
    lo, hi = 0.0, 1.0
    while t_sf(hi, df) > tail:  # bracket: t_sf falls monotonically in t
        lo, hi = hi, hi * 2.0
    # Bisection: ~60 halvings reach double precision; the result is cached per (q, df).
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_sf(mid, df) > tail:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-14 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Summary:
    """Mean, sample std and a two-sided Student-t interval of the mean over `n` values.

    With n = 1 the std and the interval are undefined (None): one seed says nothing
    about seed-to-seed spread. Identical values give a degenerate interval [mean, mean].
    """

    n: int
    mean: float
    std: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float

    @property
    def half_width(self) -> float | None:
        if self.ci_low is None or self.ci_high is None:
            return None
        return (self.ci_high - self.ci_low) / 2.0

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "n": self.n,
            "mean": self.mean,
            "std": self.std,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "confidence": self.confidence,
        }


def mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def sample_std(values: list[float]) -> float:
    """Standard deviation with the n - 1 (Bessel) denominator; needs two or more values."""
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


def t_critical(n: int, confidence: float = 0.95) -> float:
    """The t multiplier of a two-sided `confidence` interval of a mean of n values."""
    return t_ppf(0.5 + confidence / 2.0, float(n - 1))


def summarize(values: Iterable[float], confidence: float = 0.95) -> Summary:
    """Summarise values (one per seed). Raises ValueError when there are none."""
    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        raise ValueError("summarize needs at least one value")
    m = mean(vals)
    if n == 1:
        return Summary(n=1, mean=m, std=None, ci_low=None, ci_high=None, confidence=confidence)
    sd = sample_std(vals)
    half = t_critical(n, confidence) * sd / math.sqrt(n)
    return Summary(n=n, mean=m, std=sd, ci_low=m - half, ci_high=m + half, confidence=confidence)


def seeds_needed(mean_value: float, sd: float, n: int, confidence: float = 0.95) -> int | None:
    """Rough number of seeds at which a t interval of this spread would exclude zero:
    (t * sd / |mean|)^2, rounded up, with t at the current n. None when mean is zero."""
    if mean_value == 0.0 or n < 2:
        return None
    if sd == 0.0:
        return n
    return max(n + 1, math.ceil((t_critical(n, confidence) * sd / abs(mean_value)) ** 2))
