"""Exact Gibbs-sampler chains over a whole (small) state space, for He, De Sa, Mitliagkas
and Ré, "Scan Order in Gibbs Sampling: Models in Which it Matters and Bounds on How Much"
(NIPS 2016, arXiv 1606.03432).

A model is a distribution pi over a finite product space (each variable binary here),
given by its support (the states with pi > 0) and their probabilities. A Gibbs update of
variable i resamples x_i from pi(x_i | x_-i); on the support this is the matrix
P_i(x, y) = pi(y) / sum_{z: z_-i = x_-i} pi(z) for y that differ from x at most at i.

- random scan: one step picks i uniformly, P_R = (1/n) sum_i P_i;
- systematic scan: one sweep updates 1, 2, ..., n in order, P_S = P_1 P_2 ... P_n.

Mixing times count single-variable updates, so the two are comparable:
t_R = min{t : d_R(t) <= eps}, d(t) = max over starting states x of ||P^t(x, .) - pi||_TV,
and t_S = n * min{s : d_S(s) <= eps} (systematic scan reaches its distribution at sweep
ends). d(t) is non-increasing in t, so the minimum is found by doubling and bisection on
exact matrix powers, with no simulation.

The models (our constructions; the summary does not describe the paper's):
- `sequence_of_dependencies(n, odds_power)`: pi over the n + 1 "prefix" states
  1^k 0^(n-k) (x_i may be 1 only when x_{i-1} is: each variable depends on the one before
  it), with pi proportional to r^k, r = n^odds_power. Only the variable at the boundary of
  the prefix can change, and it moves forward with odds r. With r = n (odds_power 1) a
  sweep in order 1..n climbs the whole prefix in one pass with probability about
  (1 - 1/n)^n ~ 1/e, so systematic scan mixes in O(1) sweeps = O(n) updates, while random
  scan must pick the n boundary variables one after another (each with probability
  1/n): Theta(n^2) updates. With odds_power 0 (uniform) both move the boundary
  diffusively and the ratio stays bounded. Our construction: the summary does not
  describe the paper's models.
- `ising_chain(n, beta)`: a ferromagnetic Ising model on a path of n spins (all 2^n
  states), a control in which neither scan order has a structural advantage.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from torch import nn


@dataclass
class GibbsModel:
    """pi over `states` (rows: binary assignments of the n variables), all with pi > 0."""

    name: str
    states: np.ndarray  # (S, n) int8
    pi: np.ndarray  # (S,) float64, sums to 1

    @property
    def n(self) -> int:
        return int(self.states.shape[1])

    def index(self) -> dict[tuple[int, ...], int]:
        return {tuple(int(v) for v in s): k for k, s in enumerate(self.states)}


def sequence_of_dependencies(n: int, odds_power: float = 1.0) -> GibbsModel:
    """pi(1^k 0^(n-k)) proportional to r^k, k = 0..n, with odds r = n^odds_power of each
    step forward (odds_power 0: uniform)."""
    states = np.array([[1] * k + [0] * (n - k) for k in range(n + 1)], dtype=np.int8)
    logw = odds_power * math.log(n) * (np.arange(n + 1) - n)  # r^(k-n): no overflow
    w = np.exp(logw)
    return GibbsModel(f"sequence_of_dependencies_n{n}_p{odds_power:g}", states, w / w.sum())


def ising_chain(n: int, beta: float) -> GibbsModel:
    """pi(x) proportional to exp(beta * sum_i s_i s_{i+1}), s = 2x - 1, on a path of n spins."""
    states = np.array(list(itertools.product((0, 1), repeat=n)), dtype=np.int8)
    spins = 2.0 * states - 1.0
    energy = (spins[:, :-1] * spins[:, 1:]).sum(1) if n > 1 else np.zeros(len(states))
    w = np.exp(beta * energy)
    return GibbsModel(f"ising_chain_n{n}_beta{beta:g}", states, w / w.sum())


def build_model(family: str, n: int, beta: float = 1.0, odds_power: float = 1.0) -> GibbsModel:
    if family == "sequence_of_dependencies":
        return sequence_of_dependencies(n, odds_power)
    if family == "ising_chain":
        return ising_chain(n, beta)
    raise ValueError(f"unknown model family {family!r}")


def update_kernels(model: GibbsModel) -> tuple[np.ndarray, np.ndarray]:
    """For each variable i and state s, the two possible next states (x_i := 0 or 1) and
    their probabilities under the Gibbs update: next (n, S, 2) int, prob (n, S, 2)."""
    idx = model.index()
    n, S = model.n, len(model.states)
    nxt = np.zeros((n, S, 2), dtype=np.int64)
    prob = np.zeros((n, S, 2))
    for s, state in enumerate(model.states):
        for i in range(n):
            cand = []
            for v in (0, 1):
                y = list(int(t) for t in state)
                y[i] = v
                k = idx.get(tuple(y))
                cand.append((k, model.pi[k] if k is not None else 0.0))
            z = cand[0][1] + cand[1][1]
            for v, (k, p) in enumerate(cand):
                nxt[i, s, v] = s if k is None else k  # off the support: probability 0
                prob[i, s, v] = p / z
    return nxt, prob


def update_matrices(model: GibbsModel) -> list[np.ndarray]:
    """P_i for each variable, as dense (S, S) stochastic matrices."""
    nxt, prob = update_kernels(model)
    S = len(model.states)
    mats = []
    for i in range(model.n):
        P = np.zeros((S, S))
        for v in (0, 1):
            np.add.at(P, (np.arange(S), nxt[i, :, v]), prob[i, :, v])
        mats.append(P)
    return mats


def random_scan_matrix(mats: list[np.ndarray]) -> np.ndarray:
    return sum(mats) / len(mats)


def systematic_sweep_matrix(mats: list[np.ndarray]) -> np.ndarray:
    out = np.eye(len(mats[0]))
    for P in mats:
        out = out @ P
    return out


def tv_rows(P: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """Total-variation distance of each row of P to pi."""
    return 0.5 * np.abs(P - pi[None, :]).sum(1)


def worst_tv(P: np.ndarray, pi: np.ndarray) -> float:
    return float(tv_rows(P, pi).max())


def mixing_time(P: np.ndarray, pi: np.ndarray, eps: float = 0.25, t_max: int = 1 << 40) -> int:
    """min{t >= 0 : max_x ||P^t(x, .) - pi||_TV <= eps}, exactly, by doubling then bisection
    (d(t) is non-increasing). Raises when it exceeds t_max."""
    if worst_tv(np.eye(len(pi)), pi) <= eps:
        return 0
    powers = [P]  # powers[k] = P^(2^k)
    while worst_tv(powers[-1], pi) > eps:
        if (1 << len(powers)) > t_max:
            raise RuntimeError(f"mixing time above {t_max}")
        powers.append(powers[-1] @ powers[-1])
    # d(2^(K-1)) > eps >= d(2^K): find the smallest t in (2^(K-1), 2^K] greedily from the top
    K = len(powers) - 1
    t, acc = (1 << (K - 1)) if K else 0, (powers[K - 1] if K else np.eye(len(pi)))
    for k in range(K - 2, -1, -1):
        trial = acc @ powers[k]
        if worst_tv(trial, pi) > eps:
            t, acc = t + (1 << k), trial
    return t + 1


def mixing_time_brute(
    P: np.ndarray, pi: np.ndarray, eps: float = 0.25, t_max: int = 100_000
) -> int:
    """The same by stepping every starting distribution one step at a time (for tests)."""
    dist = np.eye(len(pi))
    for t in range(t_max + 1):
        if worst_tv(dist, pi) <= eps:
            return t
        dist = dist @ P
    raise RuntimeError(f"mixing time above {t_max}")


def spectral_gap(P: np.ndarray) -> float:
    """1 - (second-largest eigenvalue modulus): the absolute spectral gap; for a
    non-reversible sweep matrix the eigenvalues may be complex."""
    ev = np.sort(np.abs(np.linalg.eigvals(P)))[::-1]
    return float(1.0 - ev[1]) if len(ev) > 1 else 1.0


def worst_start(P: np.ndarray, pi: np.ndarray, t: int) -> int:
    """The starting state farthest from pi after t steps."""
    return int(np.argmax(tv_rows(np.linalg.matrix_power(P, t), pi)))


def simulate(
    nxt: np.ndarray,
    prob: np.ndarray,
    start: int,
    scan: str,
    steps: int,
    n_chains: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Run n_chains independent Gibbs chains from `start` for `steps` single-variable
    updates (random scan: a uniform variable each step; systematic: variables 0..n-1 in
    turn) and return the final state indices."""
    n = nxt.shape[0]
    x = np.full(n_chains, start, dtype=np.int64)
    for t in range(steps):
        i = rng.integers(n, size=n_chains) if scan == "random" else np.full(n_chains, t % n)
        p1 = prob[i, x, 1]
        pick = (rng.random(n_chains) < p1).astype(np.int64)
        x = nxt[i, x, pick]
    return x


class GibbsScanStudy(nn.Module):
    """No parameters: the settings of one study (a model family over sizes), so the harness
    can build it like any model. `sizes` are the numbers of variables n (the first
    `n_sizes` of them, so a tier can shorten every arm's list)."""

    def __init__(
        self,
        family: str,
        sizes: list[int],
        n_sizes: int | None = None,
        beta: float = 1.0,
        odds_power: float = 1.0,
        eps: float = 0.25,
        sim_chains: int = 20_000,
        sim_max_size: int = 16,
    ):
        super().__init__()
        sizes = [int(s) for s in sizes]
        self.family, self.eps = family, eps
        self.sizes = sizes if n_sizes is None else sizes[: int(n_sizes)]
        self.beta, self.odds_power = beta, odds_power
        self.sim_chains, self.sim_max_size = int(sim_chains), int(sim_max_size)

    def models(self) -> list[GibbsModel]:
        return [build_model(self.family, n, self.beta, self.odds_power) for n in self.sizes]
