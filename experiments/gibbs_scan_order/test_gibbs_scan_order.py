"""gibbs_scan: exact mixing times against brute force (a 3-state chain by hand), Gibbs
update matrices against their definition, the simulation against the exact distribution,
the scan-order gap on the dependencies model, and a smoke run end to end."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.gibbs_scan_order.model import (
    build_model,
    ising_chain,
    mixing_time,
    mixing_time_brute,
    random_scan_matrix,
    sequence_of_dependencies,
    simulate,
    spectral_gap,
    systematic_sweep_matrix,
    update_kernels,
    update_matrices,
)
from experiments.gibbs_scan_order.task import sim_agreement_bound
from shortsci_bench.claims.schema import load_paper
from tests.conftest import REPO, run_cfg

# A 3-state chain small enough to follow by hand: pi = (1/2, 1/4, 1/4) is stationary
# (columns: 1/2*0.5 + 1/4*0.5 + 1/4*0.5 = 1/2, ...).
P3 = np.array([[0.5, 0.25, 0.25], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5]])
PI3 = np.array([0.5, 0.25, 0.25])


def test_three_state_chain_by_hand():
    assert np.allclose(PI3 @ P3, PI3)
    # From state 1 the distribution after t >= 1 steps is (1/2, 1/4 + 2^-(t+1), 1/4 - 2^-(t+1))
    # (state 0 jumps to pi at once; the 1-vs-2 imbalance halves each step), so the worst TV
    # is 3/4 at t = 0 and 2^-(t+1) after: 1/4, 1/8, 1/16, ...
    for t, want in ((0, 0.75), (1, 0.25), (2, 0.125), (3, 0.0625)):
        Pt = np.linalg.matrix_power(P3, t)
        assert 0.5 * np.abs(Pt - PI3).sum(1).max() == pytest.approx(want)
    assert mixing_time(P3, PI3, 0.25) == mixing_time_brute(P3, PI3, 0.25) == 1
    assert mixing_time(P3, PI3, 0.2) == mixing_time_brute(P3, PI3, 0.2) == 2
    assert mixing_time(P3, PI3, 0.01) == mixing_time_brute(P3, PI3, 0.01) == 6  # 2^-7 <= .01 < 2^-6
    # second eigenvalue 1/2: spectral gap 1/2
    assert spectral_gap(P3) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(5))
def test_mixing_time_matches_brute_force_on_random_chains(seed):
    rng = np.random.default_rng(seed)
    for size in (3, 5, 8):
        P = rng.random((size, size)) ** 4  # uneven rows: slow-ish mixing
        P /= P.sum(1, keepdims=True)
        w, v = np.linalg.eig(P.T)
        pi = np.real(v[:, np.argmin(np.abs(w - 1))])
        pi /= pi.sum()
        for eps in (0.25, 0.05, 0.001):
            assert mixing_time(P, pi, eps) == mixing_time_brute(P, pi, eps)


def test_gibbs_update_matrices_follow_the_conditionals():
    gm = ising_chain(3, 0.7)
    mats = update_matrices(gm)
    idx = gm.index()
    for i, P in enumerate(mats):
        assert np.allclose(P.sum(1), 1) and np.allclose(gm.pi @ P, gm.pi)
        for s, state in enumerate(gm.states):
            other = list(state)
            other[i] = 1 - other[i]
            k = idx[tuple(int(v) for v in other)]
            want = gm.pi[k] / (gm.pi[k] + gm.pi[s])
            assert P[s, k] == pytest.approx(want)
            assert P[s, s] == pytest.approx(1 - want)
    # random scan is reversible; a sweep generally is not, but both keep pi
    PR = random_scan_matrix(mats)
    assert np.allclose(gm.pi[:, None] * PR, (gm.pi[:, None] * PR).T)
    assert np.allclose(gm.pi @ systematic_sweep_matrix(mats), gm.pi)


def test_dependencies_model_only_moves_the_boundary():
    gm = sequence_of_dependencies(5, 1.0)
    assert len(gm.states) == 6 and np.all(np.diff(gm.states.astype(int), axis=1) <= 0)
    assert gm.pi[-1] / gm.pi[-2] == pytest.approx(5.0)  # forward odds r = n
    mats = update_matrices(gm)
    for i, P in enumerate(mats):
        # x_i moves only between 1^i 0^(n-i) and 1^(i+1) 0^(n-i-1): states i and i + 1
        moving = {s for s in range(6) if P[s, s] < 1}
        assert moving == {i, i + 1}


def test_systematic_scan_wins_by_a_growing_factor_on_dependencies_only():
    ratios = {}
    for family, power in (("sequence_of_dependencies", 1.0), ("sequence_of_dependencies", 0.0)):
        r = []
        for n in (8, 32):
            gm = build_model(family, n, odds_power=power)
            mats = update_matrices(gm)
            t_r = mixing_time(random_scan_matrix(mats), gm.pi)
            t_s = n * mixing_time(systematic_sweep_matrix(mats), gm.pi)
            r.append(t_r / t_s)
        ratios[power] = r
    assert ratios[1.0][1] > 2 * ratios[1.0][0]  # grows with n (5.75 -> 12.6)
    assert ratios[0.0][1] < 1.5 * ratios[0.0][0]  # flat: bounded (1.5 -> 1.9)


@pytest.mark.parametrize("scan", ["random", "systematic"])
def test_simulation_agrees_with_the_exact_distribution(scan):
    gm = sequence_of_dependencies(6, 1.0)
    mats = update_matrices(gm)
    nxt, prob = update_kernels(gm)
    steps = 12
    P = random_scan_matrix(mats) if scan == "random" else systematic_sweep_matrix(mats)
    exact = np.linalg.matrix_power(P, steps if scan == "random" else steps // 6)[0]
    ends = simulate(nxt, prob, 0, scan, steps, 20000, np.random.default_rng(0))
    emp = np.bincount(ends, minlength=len(gm.pi)) / len(ends)
    assert 0.5 * np.abs(emp - exact).sum() <= sim_agreement_bound(exact, len(ends))
    # and the check can fail: a wrong distribution (one more sweep's worth) is caught
    wrong = np.linalg.matrix_power(P, (steps if scan == "random" else steps // 6) + 6)[0]
    if scan == "random":
        wrong = np.linalg.matrix_power(P, 2)[0]
    assert 0.5 * np.abs(emp - wrong).sum() > sim_agreement_bound(wrong, len(ends))


def test_smoke_run(tmp_path):
    rec = run_cfg(["+experiment=gibbs_scan", "tier=smoke", "arm=dependencies"], tmp_path)
    assert rec.status == "completed"
    m = rec.metrics
    assert m["tmix/random_n4"] == 25 and m["tmix/systematic_n4"] == 8
    assert m["sim/agree_fraction"] == 1.0 and m["sim/n_checks"] == 4


def test_claims_name_this_experiment():
    paper = load_paper(REPO / "experiments" / "gibbs_scan_order" / "claims.yaml")
    active = [c for c in paper.claims if c.status == "active"]
    assert active and all(c.experiment == "gibbs_scan" for c in active)
