"""Exact and simulated mixing times of random- and systematic-scan Gibbs sampling.

An evaluate-only task (`fit_free`, like `experiments/deep_linear_no_poor_minima/task.py`):
its one validation pass does the whole study. For each size n of the model family it
builds the Gibbs update matrices over the whole support, computes the exact total-variation
mixing times of random scan (t_R) and systematic scan (t_S, in single-variable updates) and
the spectral gaps, then checks the exact distributions against simulation: `sim_chains`
independent chains are run from the worst starting state for t_R (random) and t_S
(systematic) updates, and the total-variation distance D between their empirical
distribution and the exact one is compared with what sampling noise allows,
B + sqrt(ln(1/delta) / (2N)) where B = 1/2 sum_y sqrt(p_y (1 - p_y) / N) bounds E[D]
(Jensen) and the second term is McDiarmid's deviation (D moves by at most 1/N per chain).

The seed drives only the simulation; the exact quantities are the same for every seed.
Summary metrics (one history row): the ratio t_R / t_S at each size, its log-log slope
against n (how fast the ratio grows: a log factor has slope 1/ln n, about 0.33 over
n = 8..64), and the largest "exponent ratio" max(ln t_R / ln t_S, ln t_S / ln t_R) (at
most 2 when each mixing time is within the square of the other).
"""

from __future__ import annotations

import math
import time

import numpy as np

from experiments.gibbs_scan_order.model import (
    GibbsScanStudy,
    mixing_time,
    random_scan_matrix,
    simulate,
    spectral_gap,
    systematic_sweep_matrix,
    tv_rows,
    update_kernels,
    update_matrices,
)
from shortsci_bench.tasks.base import HarnessTask

SIM_DELTA = 1e-4  # per-check false-alarm probability of the simulation agreement bound


def sim_agreement_bound(p: np.ndarray, n_chains: int, delta: float = SIM_DELTA) -> float:
    """B + sqrt(ln(1/delta) / (2N)): the TV distance between N samples' histogram and p
    exceeds it with probability at most delta."""
    b = 0.5 * float(np.sqrt(p * (1 - p) / n_chains).sum())
    return b + math.sqrt(math.log(1 / delta) / (2 * n_chains))


class GibbsScanTask(HarnessTask):
    fit_free = True  # run.py calls trainer.validate: the study below is the whole run

    def __init__(self, model: GibbsScanStudy, optimizer=None, scheduler=None, seed: int = 0):
        super().__init__(optimizer, scheduler)
        self.model = self.study = model  # the harness looks for `task.model`
        self.seed = int(seed)

    def validation_step(self, batch, batch_idx):
        t0 = time.perf_counter()
        rng = np.random.default_rng(self.seed)
        row: dict[str, float] = {"step": 0.0}
        sizes, ratios, exp_ratios, agree = [], [], [], []
        for gm in self.study.models():
            n, pi = gm.n, gm.pi
            mats = update_matrices(gm)
            P_R, P_S = random_scan_matrix(mats), systematic_sweep_matrix(mats)
            for P in (P_R, P_S):
                # each update keeps pi stationary: a wrong matrix would fail here, not later
                if not np.allclose(pi @ P, pi, atol=1e-12):
                    raise AssertionError(f"{gm.name}: pi is not stationary")
            t_r = mixing_time(P_R, pi, self.study.eps)
            sweeps = mixing_time(P_S, pi, self.study.eps)
            t_s = n * sweeps
            row[f"tmix/random_n{n}"] = float(t_r)
            row[f"tmix/systematic_n{n}"] = float(t_s)
            row[f"ratio/n{n}"] = t_r / t_s
            row[f"gap/random_n{n}"] = spectral_gap(P_R)
            row[f"gap/systematic_sweep_n{n}"] = spectral_gap(P_S)
            row[f"relax_ratio/n{n}"] = (1 / row[f"gap/random_n{n}"]) / (
                n / row[f"gap/systematic_sweep_n{n}"]
            )
            sizes.append(n)
            ratios.append(t_r / t_s)
            if min(t_r, t_s) > 1:
                exp_ratios.append(max(math.log(t_r) / math.log(t_s), math.log(t_s) / math.log(t_r)))
            if n <= self.study.sim_max_size:
                nxt, prob = update_kernels(gm)
                for scan, P, steps, power in (
                    ("random", P_R, t_r, t_r),
                    ("systematic", P_S, t_s, sweeps),
                ):
                    Pt = np.linalg.matrix_power(P, power)
                    start = int(np.argmax(tv_rows(Pt, pi)))
                    exact = Pt[start]
                    ends = simulate(nxt, prob, start, scan, steps, self.study.sim_chains, rng)
                    emp = np.bincount(ends, minlength=len(pi)) / len(ends)
                    d = 0.5 * float(np.abs(emp - exact).sum())
                    bound = sim_agreement_bound(exact, len(ends))
                    row[f"sim/{scan}_tv_to_exact_n{n}"] = d
                    row[f"sim/{scan}_bound_n{n}"] = bound
                    row[f"sim/{scan}_tv_to_pi_n{n}"] = 0.5 * float(np.abs(emp - pi).sum())
                    row[f"exact/{scan}_tv_to_pi_n{n}"] = 0.5 * float(np.abs(exact - pi).sum())
                    agree.append(d <= bound)
        logn, logr = np.log(sizes), np.log(ratios)
        row["ratio/loglog_slope"] = (
            float(np.polyfit(logn, logr, 1)[0]) if len(sizes) > 1 else float("nan")
        )
        row["ratio/largest_n"] = ratios[-1]
        row["squares/max_exponent_ratio"] = max(exp_ratios) if exp_ratios else float("nan")
        row["sim/agree_fraction"] = float(np.mean(agree)) if agree else float("nan")
        row["sim/n_checks"] = float(len(agree))
        self.history.append(row)
        for logger in self.loggers:
            logger.log_metrics({k: v for k, v in row.items() if k != "step"}, step=0)
        self._train_seconds, self._train_steps = time.perf_counter() - t0, 1
