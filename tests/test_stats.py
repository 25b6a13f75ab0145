"""Summary statistics: the hand-made t quantile against scipy, and the interval rules."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from shortsci_bench.collect.stats import (
    betainc,
    sample_std,
    seeds_needed,
    summarize,
    t_cdf,
    t_ppf,
)

scipy_stats = pytest.importorskip("scipy.stats")
scipy_special = pytest.importorskip("scipy.special")

DFS = [1, 1.5, 2, 3, 4, 5, 7, 9, 19, 29, 99, 999, 10_000]
QS = [0.0005, 0.01, 0.1, 0.25, 0.5, 0.6, 0.9, 0.95, 0.975, 0.99, 0.995, 0.9995]


@pytest.mark.parametrize("df", DFS)
def test_t_ppf_matches_scipy(df):
    for q in QS:
        expected = scipy_stats.t.ppf(q, df)
        assert t_ppf(q, df) == pytest.approx(expected, rel=1e-9, abs=1e-12), (q, df)


@pytest.mark.parametrize("df", [1, 3, 10, 100])
def test_t_cdf_inverts_ppf_and_matches_scipy(df):
    for t in [-30.0, -2.0, -0.1, 0.0, 0.7, 2.5, 12.0]:
        assert t_cdf(t, df) == pytest.approx(scipy_stats.t.cdf(t, df), rel=1e-10, abs=1e-14)
    for q in (0.05, 0.5, 0.975):
        assert t_cdf(t_ppf(q, df), df) == pytest.approx(q, rel=1e-10)


def test_betainc_matches_scipy():
    for a, b in [(0.5, 0.5), (1, 1), (2.5, 0.5), (50, 0.5), (0.5, 30), (10, 10)]:
        for x in [0.0, 1e-6, 0.01, 0.3, 0.5, 0.9, 0.999, 1.0]:
            assert betainc(a, b, x) == pytest.approx(
                scipy_special.betainc(a, b, x), rel=1e-10, abs=1e-15
            )


def test_t_ppf_rejects_bad_input():
    with pytest.raises(ValueError):
        t_ppf(1.0, 3)
    with pytest.raises(ValueError):
        t_ppf(0.5, 0)


def test_summarize_matches_scipy_interval():
    values = [0.91, 0.93, 0.92, 0.95, 0.90]
    s = summarize(values, 0.95)
    lo, hi = scipy_stats.t.interval(
        0.95, len(values) - 1, loc=s.mean, scale=scipy_stats.sem(values)
    )
    assert s.n == 5
    assert s.mean == pytest.approx(0.922)
    assert s.std == pytest.approx(scipy_stats.tstd(values))
    assert (s.ci_low, s.ci_high) == (pytest.approx(lo, rel=1e-10), pytest.approx(hi, rel=1e-10))


def test_other_confidence_levels_are_wider_or_narrower():
    values = [1.0, 2.0, 4.0, 3.0]
    w90 = summarize(values, 0.90).half_width
    w99 = summarize(values, 0.99).half_width
    assert w90 < summarize(values, 0.95).half_width < w99
    expected = scipy_stats.t.ppf(0.995, 3) * sample_std(values) / 2.0
    assert w99 == pytest.approx(expected, rel=1e-10)


def test_single_value_has_no_interval():
    s = summarize([0.5])
    assert (s.n, s.mean, s.std, s.ci_low, s.ci_high, s.half_width) == (
        1,
        0.5,
        None,
        None,
        None,
        None,
    )


def test_identical_values_give_a_degenerate_interval():
    s = summarize([3.0, 3.0, 3.0])
    assert (s.std, s.ci_low, s.ci_high) == (0.0, 3.0, 3.0)


def test_empty_sample_is_an_error():
    with pytest.raises(ValueError):
        summarize([])


def test_seeds_needed_resolves_the_interval():
    # With mean 1 and sd 2, the rough estimate is (t * 2 / 1)^2 seeds, and more seeds than
    # that give an interval that excludes zero (with the normal t, nearly so).
    n_needed = seeds_needed(1.0, 2.0, 3)
    assert n_needed == math.ceil((scipy_stats.t.ppf(0.975, 2) * 2.0) ** 2)
    assert seeds_needed(0.0, 1.0, 3) is None
    assert seeds_needed(0.5, 0.01, 5) == 6  # already decisive: never fewer than n + 1


def test_stats_module_does_not_import_scipy():
    code = "import sys, shortsci_bench.collect.stats; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
