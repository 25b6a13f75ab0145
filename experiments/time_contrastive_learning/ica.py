"""Linear ICA and the evaluation of source recovery, written out (no scikit-learn).

- `whiten`: centre and whiten by PCA (zero mean, identity covariance).
- `fastica`: symmetric FastICA (Hyvärinen 1999) with the log-cosh contrast (g = tanh),
  on whitened data, from a seeded random orthogonal start.
- `matched_correlation`: the mean absolute Pearson correlation between estimated and true
  components after the best one-to-one matching (Hungarian algorithm, `best_assignment`,
  written out: scipy is only a development dependency), the measure of Hyvärinen & Morioka
  (NIPS 2016), Section 5.
"""

from __future__ import annotations

import numpy as np


def whiten(x: np.ndarray, n_components: int | None = None, eps: float = 1e-12):
    """x (N, d) -> (z (N, k), K (k, d), mean): z = (x - mean) K^T has identity covariance."""
    mean = x.mean(0)
    xc = x - mean
    cov = xc.T @ xc / len(x)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1][: n_components or x.shape[1]]
    k = (evecs[:, order] / np.sqrt(np.maximum(evals[order], eps))).T
    return xc @ k.T, k, mean


def symmetric_decorrelation(w: np.ndarray) -> np.ndarray:
    """(W W^T)^{-1/2} W: the nearest matrix with orthonormal rows."""
    evals, evecs = np.linalg.eigh(w @ w.T)
    return evecs @ np.diag(1.0 / np.sqrt(evals)) @ evecs.T @ w


def fastica(
    x: np.ndarray,
    n_components: int | None = None,
    seed: int = 0,
    max_iter: int = 1000,
    tol: float = 1e-7,
) -> tuple[np.ndarray, dict]:
    """Estimated components (N, k) of x (N, d), and {"unmixing", "iterations", "converged"}.

    Fixed point per row w of W (on whitened z): w <- E[z g(w^T z)] - E[g'(w^T z)] w, then
    symmetric decorrelation; converged when every |<w_new, w_old>| is within tol of 1.
    """
    z, k, mean = whiten(x, n_components)
    n = z.shape[1]
    rng = np.random.default_rng(seed)
    w = symmetric_decorrelation(rng.standard_normal((n, n)))
    converged, it = False, 0
    while it < max_iter:
        it += 1
        wz = z @ w.T
        g = np.tanh(wz)
        w_new = g.T @ z / len(z) - np.diag((1.0 - g**2).mean(0)) @ w
        w_new = symmetric_decorrelation(w_new)
        change = np.max(np.abs(np.abs(np.einsum("ij,ij->i", w_new, w)) - 1.0))
        w = w_new
        if change < tol:
            converged = True
            break
    return z @ w.T, {"unmixing": w @ k, "mean": mean, "iterations": it, "converged": converged}


def correlation_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlations between the columns of a (N, p) and b (N, q): (p, q)."""
    a = (a - a.mean(0)) / a.std(0)
    b = (b - b.mean(0)) / b.std(0)
    return a.T @ b / len(a)


def best_assignment(cost: np.ndarray) -> np.ndarray:
    """The column assigned to each row that minimises the total cost of a square matrix:
    the Hungarian algorithm with potentials (shortest augmenting paths), O(n^3)."""
    n = cost.shape[0]
    if cost.shape != (n, n):
        raise ValueError(f"need a square cost matrix, got {cost.shape}")
    inf = float("inf")
    u, v = np.zeros(n + 1), np.zeros(n + 1)  # row and column potentials (1-based, 0 = none)
    match = np.zeros(n + 1, dtype=int)  # match[j]: the row matched to column j
    way = np.zeros(n + 1, dtype=int)
    for i in range(1, n + 1):
        match[0], j0 = i, 0
        minv = np.full(n + 1, inf)
        used = np.zeros(n + 1, dtype=bool)
        while True:
            used[j0] = True
            i0, delta, j1 = match[j0], inf, 0
            for j in range(1, n + 1):
                if not used[j]:
                    cur = cost[i0 - 1, j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(n + 1):
                if used[j]:
                    u[match[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if match[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            match[j0] = match[j1]
            j0 = j1
    cols = np.zeros(n, dtype=int)
    for j in range(1, n + 1):
        cols[match[j] - 1] = j - 1
    return cols


def matched_correlation(estimated: np.ndarray, true: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean |correlation| over the one-to-one matching of columns that maximises it, and the
    matched |correlations| (one per true component)."""
    c = np.abs(correlation_matrix(estimated, true))
    cols = best_assignment(-c)
    matched = c[np.arange(len(c)), cols][np.argsort(cols)]
    return float(matched.mean()), matched
