"""deep_linear: the closed-form minima against brute force, the Hessian at zero for one vs
two hidden layers, the data's assumption checks, and smoke runs end to end."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from experiments.deep_linear_no_poor_minima.data import (
    LinearSyntheticDataModule,
    check_assumptions,
    global_minimizer,
    global_minimum,
    make_regression,
    sigma_matrix,
)
from experiments.deep_linear_no_poor_minima.model import (
    DeepLinearEnsemble,
    hessian_eigenvalues,
    linear_net_loss,
    loss_drop_from_zero,
)
from shortsci_bench.claims.schema import load_paper
from tests.conftest import REPO, run_cfg

pytestmark = pytest.mark.usefixtures("one_thread")  # experiments/conftest.py


def _data(n=40, d_x=4, d_y=3, seed=0):
    return make_regression(n, d_x, d_y, [1.5, 1.0, 0.6][:d_y], noise=0.2, seed=seed)


def _loss(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(((x @ w.T - y) ** 2).sum() / (2 * len(x)))


def test_unconstrained_minimum_is_least_squares():
    x, y = _data()
    w_ls = torch.linalg.lstsq(x, y).solution.T
    assert global_minimum(x, y) == pytest.approx(_loss(w_ls, x, y), rel=1e-12)
    assert torch.allclose(global_minimizer(x, y), w_ls, atol=1e-10)


def test_rank_one_minimum_matches_brute_force():
    """d_y = 2, rank 1: W = u v^T with |u| = 1; for each direction u the best v is least
    squares, so the minimum over a fine grid of angles is a brute-force optimum."""
    x, y = _data(n=30, d_x=3, d_y=2, seed=1)
    angles = torch.linspace(0, math.pi, 200_001, dtype=torch.float64)
    u = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)  # (K, d_y), unit rows
    v = torch.linalg.solve(x.T @ x, x.T @ y @ u.T).T  # (K, d_x): least squares per u
    pred = torch.einsum("nd,kd,ke->kne", x, v, u)  # x (u v^T)^T for every angle
    best = float((((pred - y) ** 2).sum((1, 2)) / (2 * len(x))).min())
    closed = global_minimum(x, y, rank=1)
    assert closed == pytest.approx(best, rel=1e-6)
    assert closed <= best + 1e-12  # the grid can only come close from above
    w = global_minimizer(x, y, rank=1)
    assert int(torch.linalg.matrix_rank(w)) == 1
    assert _loss(w, x, y) == pytest.approx(closed, rel=1e-12)
    assert closed > global_minimum(x, y)  # the bottleneck costs something here


def test_rank_constrained_minimum_beats_random_low_rank_products():
    x, y = _data(seed=2)
    g = torch.Generator().manual_seed(0)
    for rank in (1, 2):
        closed = global_minimum(x, y, rank)
        for _ in range(200):
            a = torch.randn(3, rank, generator=g, dtype=torch.float64)
            b = torch.randn(rank, 4, generator=g, dtype=torch.float64)
            assert _loss(a @ b, x, y) >= closed - 1e-12


def test_generated_data_meet_the_assumptions_and_broken_data_are_refused():
    x, y = make_regression(100, 10, 5, [2.0, 1.625, 1.25, 0.875, 0.5], 0.1, seed=3)
    checks = check_assumptions(x, y)
    assert checks["holds"] and checks["rank_xx"] == 10 and checks["rank_xy"] == 5
    assert torch.allclose(x.T @ x / 100, torch.eye(10, dtype=torch.float64), atol=1e-10)
    eig = torch.linalg.eigvalsh(sigma_matrix(x, y))
    assert checks["sigma_min_rel_gap"] == pytest.approx(
        float((eig[1:] - eig[:-1]).min() / eig.max()), rel=1e-9
    )
    x_bad = torch.cat([x[:, :9], x[:, :1]], dim=1)  # a repeated column: X X^T singular
    assert not check_assumptions(x_bad, y)["holds"]
    y_bad = torch.cat([y[:, :4], y[:, :1]], dim=1)  # a repeated output: X Y^T rank 4
    assert not check_assumptions(x, y_bad)["holds"]
    dm = LinearSyntheticDataModule(n=100, d_x=10, d_y=5, singular_values=[1, 1, 1, 1, 1], noise=0.0)
    with pytest.raises(ValueError, match="assumptions"):  # equal singular values, no noise
        dm.setup()


def test_hessian_at_zero_one_hidden_layer_is_a_strict_saddle():
    """With one hidden layer of width h the Hessian at zero is [[0, -M], [-M^T, 0]]-like:
    eigenvalues +-sigma_i(Y X^T / m), each h times, and zeros."""
    x, y = _data()
    h = 3
    eig = hessian_eigenvalues(x, y, [h])
    sigma = torch.linalg.svdvals(y.T @ x / len(x))
    expected = torch.sort(sigma.repeat(h)).values
    assert torch.allclose(torch.sort(eig[eig > 1e-9]).values, expected, atol=1e-10)
    assert torch.allclose(torch.sort(-eig[eig < -1e-9]).values, expected, atol=1e-10)
    assert (eig < -1e-9).sum() == len(sigma) * h


@pytest.mark.parametrize("hidden", [[3, 3], [3, 2, 3]])
def test_hessian_at_zero_two_or_more_hidden_layers_is_a_bad_saddle(hidden):
    """Every second derivative vanishes at zero (the loss's lowest non-constant term there
    has degree >= 3), so no negative eigenvalue; yet the loss drops along a path out of it."""
    x, y = _data()
    eig = hessian_eigenvalues(x, y, hidden)
    assert eig.abs().max() < 1e-12
    assert loss_drop_from_zero(x, y, hidden) > 0
    assert loss_drop_from_zero(x, y, [3]) > 0


def test_ensemble_networks_are_independent():
    """The summed loss gives each initialisation the gradient of its own loss."""
    x, y = _data()
    net = DeepLinearEnsemble(d_x=4, d_y=3, hidden=[5, 2], n_inits=4).double()
    net.losses(x, y).sum().backward()
    for r in range(4):
        mats = [w.detach()[r].clone().requires_grad_() for w in net.weights]
        linear_net_loss(mats, x, y).backward()
        for w, m in zip(net.weights, mats):
            assert torch.allclose(w.grad[r], m.grad)
    assert net.min_width == 2
    assert net.product().shape == (4, 3, 4)


@pytest.mark.parametrize(
    "arm, negative", [("depth1", True), ("depth2", False), ("depth2_bottleneck", False)]
)
def test_smoke_run_reaches_the_global_minimum(arm, negative, tmp_path: Path):
    record = run_cfg(
        ["+experiment=deep_linear", f"arm={arm}", "tier=smoke", "logger=none"], tmp_path / "runs"
    )
    assert record is not None and record.status == "completed", record and record.error
    m = record.metrics
    assert m["assumptions/hold"] == 1.0
    assert m["global/fraction"] == 1.0 and m["global/max_gap"] < 1e-6
    assert m["global/n_stationary_not_global"] == 0
    assert (m["hessian/n_negative_zero"] > 0) == negative
    assert m["zero/loss_drop"] > 0
    assert record.history[0]["step"] == 0 and record.history[-1]["step"] > 0
    assert record.provenance.data["assumptions"]["holds"] is True
    paper = load_paper(REPO / "experiments" / "deep_linear_no_poor_minima" / "claims.yaml")
    for claim in paper.claims:
        if claim.status == "active" and claim.arm == arm:
            assert claim.metric in m, claim.id
