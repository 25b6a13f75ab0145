"""Synthetic regression data meeting the assumptions of Kawaguchi, "Deep Learning without
Poor Local Minima" (NIPS 2016), Theorem 2.3, and the closed-form global minimum.

In the paper's notation X is d_x by m and Y is d_y by m; here, as everywhere in the
harness, rows are examples: x is (m, d_x), y is (m, d_y), so X = x^T and Y = y^T. The loss
is L(W) = 1/(2m) ||W x^T - y^T||_F^2 for the product W = W_{H+1} ... W_1 (the 1/m only
rescales the paper's loss). Assumptions: d_x >= d_y, X X^T and X Y^T of full rank, and
Sigma = Y X^T (X X^T)^-1 X Y^T with d_y distinct eigenvalues.

Global minimum over products of rank at most r (r = the narrowest layer, capped at d_y):
L* = (||y||^2 - sum of the r largest eigenvalues of Sigma) / (2m), attained by
W* = U_r U_r^T Y X^T (X X^T)^-1 with U_r the top eigenvectors of Sigma (least squares when
r = d_y, reduced-rank regression when r < d_y).
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch

from shortsci_bench.data.batches import EvalBatches


def make_regression(
    n: int,
    d_x: int,
    d_y: int,
    singular_values: Sequence[float],
    noise: float,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) in float64: whitened inputs (x^T x / n = I) and y = x A + noise, where A has
    the given distinct singular values (so Sigma's eigenvalues are spread, not clustered)."""
    if len(singular_values) != d_y:
        raise ValueError(f"singular_values needs d_y={d_y} entries, got {len(singular_values)}")
    if n <= d_x:
        raise ValueError(f"n={n} examples cannot give X X^T full rank with d_x={d_x}")
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn(n, d_x, generator=g, dtype=torch.float64)
    evals, evecs = torch.linalg.eigh(x.T @ x / n)
    x = x @ evecs @ torch.diag(evals.rsqrt()) @ evecs.T
    u, _ = torch.linalg.qr(torch.randn(d_x, d_y, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(d_y, d_y, generator=g, dtype=torch.float64))
    a = u @ torch.diag(torch.tensor(list(singular_values), dtype=torch.float64)) @ v.T
    y = x @ a + noise * torch.randn(n, d_y, generator=g, dtype=torch.float64)
    return x, y


def sigma_matrix(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sigma = Y X^T (X X^T)^-1 X Y^T, (d_y, d_y)."""
    xy = x.T @ y
    return xy.T @ torch.linalg.solve(x.T @ x, xy)


def check_assumptions(x: torch.Tensor, y: torch.Tensor, gap_tol: float = 1e-8) -> dict:
    """The theorem's assumptions, each as a number, and whether all hold.

    `sigma_min_rel_gap`: the smallest gap between consecutive eigenvalues of Sigma over
    the largest; "distinct" means above `gap_tol`.
    """
    d_x, d_y = x.shape[1], y.shape[1]
    rank_xx = int(torch.linalg.matrix_rank(x.T @ x))
    xy = x.T @ y
    sigma = xy.T @ torch.linalg.pinv(x.T @ x) @ xy if rank_xx < d_x else sigma_matrix(x, y)
    eig = torch.linalg.eigvalsh(sigma).flip(0)
    gaps = (eig[:-1] - eig[1:]) / eig[0] if d_y > 1 else torch.ones(1, dtype=eig.dtype)
    out = {
        "d_x": d_x,
        "d_y": d_y,
        "rank_xx": rank_xx,
        "rank_xy": int(torch.linalg.matrix_rank(xy)),
        "sigma_min_rel_gap": float(gaps.min()),
        "sigma_eigenvalues": [float(e) for e in eig],
    }
    out["holds"] = bool(
        d_x >= d_y
        and out["rank_xx"] == d_x
        and out["rank_xy"] == d_y
        and out["sigma_min_rel_gap"] > gap_tol
    )
    return out


def global_minimum(x: torch.Tensor, y: torch.Tensor, rank: int | None = None) -> float:
    """min over W with rank(W) <= `rank` of 1/(2n) ||x W^T - y||^2 (None: no constraint)."""
    d_y = y.shape[1]
    r = d_y if rank is None else min(int(rank), d_y)
    eig = torch.linalg.eigvalsh(sigma_matrix(x, y)).flip(0)
    return float(((y**2).sum() - eig[:r].sum()) / (2 * len(x)))


def global_minimizer(x: torch.Tensor, y: torch.Tensor, rank: int | None = None) -> torch.Tensor:
    """A W (d_y, d_x) attaining `global_minimum`: the top-`rank` eigenvectors of Sigma
    projecting the least-squares solution (unique when the eigenvalues are distinct)."""
    d_y = y.shape[1]
    r = d_y if rank is None else min(int(rank), d_y)
    w_ls = torch.linalg.solve(x.T @ x, x.T @ y).T  # (d_y, d_x) = Y X^T (X X^T)^-1
    _, vecs = torch.linalg.eigh(sigma_matrix(x, y))
    u = vecs[:, -r:] if r > 0 else vecs[:, :0]
    return u @ u.T @ w_ls


class LinearSyntheticDataModule(L.LightningDataModule):
    """The whole data set as one evaluation batch: `tasks.deep_linear` runs its own
    full-batch gradient descent on it, so there is no training stream."""

    name = "linear_synthetic"

    def __init__(
        self,
        n: int = 100,
        d_x: int = 10,
        d_y: int = 5,
        singular_values: Sequence[float] = (2.0, 1.625, 1.25, 0.875, 0.5),
        noise: float = 0.1,
        seed: int = 0,
        require_assumptions: bool = True,
    ):
        super().__init__()
        self.n, self.d_x, self.d_y = n, d_x, d_y
        self.singular_values, self.noise = list(singular_values), noise
        self.seed = seed
        self.require_assumptions = require_assumptions
        self.data: tuple[torch.Tensor, torch.Tensor] | None = None
        self.assumptions: dict | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        x, y = make_regression(
            self.n, self.d_x, self.d_y, self.singular_values, self.noise, self.seed
        )
        self.data = (x, y)
        self.assumptions = check_assumptions(x, y)
        if self.require_assumptions and not self.assumptions["holds"]:
            raise ValueError(
                f"the generated data break the theorem's assumptions: {self.assumptions} "
                "(pass dataset.require_assumptions=false to run anyway)"
            )

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def val_dataloader(self) -> EvalBatches:
        return EvalBatches(tuple(t.to(self._device()) for t in self.data), self.n)

    def provenance(self) -> dict:
        return {
            "dataset": "linear_synthetic",
            "source": "experiments.deep_linear_no_poor_minima.data.make_regression",
            "n": self.n,
            "seed": self.seed,
            "singular_values": self.singular_values,
            "noise": self.noise,
            "assumptions": self.assumptions,
        }
