"""tcl_nonlinear_ica: the data model (sources, invertible mixing), FastICA and the matched
correlation against brute force, the networks' shapes, and smoke runs end to end."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.time_contrastive_learning.data import (
    NonstationaryICADataModule,
    make_sources,
    mix,
    mixing_matrices,
    unmix,
)
from experiments.time_contrastive_learning.ica import (
    best_assignment,
    correlation_matrix,
    fastica,
    matched_correlation,
    symmetric_decorrelation,
    whiten,
)
from experiments.time_contrastive_learning.model import DenoisingAutoencoder, TCLNet
from shortsci_bench.claims.schema import load_paper
from tests.conftest import REPO, run_cfg

pytestmark = pytest.mark.usefixtures("one_thread")  # experiments/conftest.py


def test_sources_have_the_segment_scales():
    rng = np.random.default_rng(0)
    s, labels, scales = make_sources(3, 4, 20000, rng)
    assert s.shape == (80000, 3) and labels.tolist() == sorted(labels.tolist())
    for seg in range(4):
        std = s[labels == seg].std(0)
        # Laplace with unit variance times the scale; the sample std is within a few %
        assert np.allclose(std, scales[seg], rtol=0.05, atol=1e-3)
    assert (scales >= 0).all() and (scales <= 1).all()


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_mixing_is_exactly_invertible(depth):
    rng = np.random.default_rng(1)
    s, _, _ = make_sources(4, 3, 100, rng)
    mats = mixing_matrices(4, depth, rng, draws=500)
    assert len(mats) == depth
    for a in mats:
        assert np.allclose(np.linalg.norm(a, axis=0), 1.0)
    x = mix(s, mats)
    assert np.allclose(unmix(x, mats), s, atol=1e-9)
    if depth > 1:  # a nonlinear map: not a linear function of s
        coef, *_ = np.linalg.lstsq(s, x, rcond=None)
        assert np.abs(s @ coef - x).max() > 1e-3


def test_whiten_and_decorrelation():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5000, 4)) @ rng.standard_normal((4, 4)) + 3.0
    z, k, mean = whiten(x)
    assert np.allclose(z.mean(0), 0, atol=1e-10)
    assert np.allclose(z.T @ z / len(z), np.eye(4), atol=1e-10)
    w = symmetric_decorrelation(rng.standard_normal((4, 4)))
    assert np.allclose(w @ w.T, np.eye(4), atol=1e-10)


def test_fastica_recovers_a_linear_mixture_of_laplace_sources():
    rng = np.random.default_rng(3)
    s = rng.laplace(size=(20000, 4))
    x = s @ rng.uniform(-1, 1, (4, 4)).T
    est, info = fastica(x, seed=0)
    assert info["converged"]
    score, matched = matched_correlation(est, s)
    assert score > 0.99 and matched.min() > 0.98
    gaussian = rng.standard_normal((20000, 4))  # no non-Gaussian structure: no recovery
    est_g, _ = fastica(gaussian @ rng.uniform(-1, 1, (4, 4)).T, seed=0)
    assert matched_correlation(est_g, gaussian)[0] < 0.95


def test_matched_correlation_equals_brute_force_over_permutations():
    rng = np.random.default_rng(4)
    true = rng.standard_normal((500, 5))
    est = true @ rng.standard_normal((5, 5)) + 0.5 * rng.standard_normal((500, 5))
    c = np.abs(correlation_matrix(est, true))
    brute = max(np.mean([c[p[j], j] for j in range(5)]) for p in itertools.permutations(range(5)))
    assert matched_correlation(est, true)[0] == pytest.approx(brute, abs=1e-12)
    assert np.allclose(np.diag(correlation_matrix(true, true)), 1.0)


def test_best_assignment_equals_brute_force():
    rng = np.random.default_rng(5)
    for n in (1, 2, 4, 6):
        for _ in range(20):
            cost = rng.standard_normal((n, n))
            cols = best_assignment(cost)
            assert sorted(cols.tolist()) == list(range(n))
            brute = min(
                sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(n))
            )
            assert cost[np.arange(n), cols].sum() == pytest.approx(brute, abs=1e-12)


def test_networks_shapes():
    tcl = TCLNet(n_comp=5, n_segments=7, depth=3)
    x = torch.randn(11, 5)
    assert tcl.features(x).shape == (11, 5) and (tcl.features(x) >= 0).all()
    assert len(tcl.hidden) == 2 and tcl.mlr.out_features == 7
    assert len(TCLNet(5, 7, depth=1).hidden) == 0  # linear map + |.| only
    loss = tcl.loss(x, torch.randint(0, 7, (11,)))
    assert loss.shape == () and torch.isfinite(loss)
    dae = DenoisingAutoencoder(n_comp=5, depth=2)
    assert dae.features(x).shape == (11, 5)
    assert torch.isfinite(dae.loss(x, None, generator=torch.Generator().manual_seed(0)))


def test_datamodule_is_seeded():
    a = NonstationaryICADataModule(
        n_comp=3, n_segments=4, segment_length=16, depth=2, condition_draws=50, seed=5
    )
    b = NonstationaryICADataModule(
        n_comp=3, n_segments=4, segment_length=16, depth=2, condition_draws=50, seed=5
    )
    a.setup(), b.setup()
    assert all(torch.equal(u, v) for u, v in zip(a.data, b.data))


@pytest.mark.parametrize("arm", ["tcl_depth2", "ica_depth1"])
def test_smoke_run(arm, tmp_path: Path):
    record = run_cfg(
        ["+experiment=tcl_nonlinear_ica", f"arm={arm}", "tier=smoke", "logger=none"],
        tmp_path / "runs",
    )
    assert record is not None and record.status == "completed", record and record.error
    m = record.metrics
    assert 0.0 <= m["corr/abs_sources"] <= 1.0 and m["ica/converged"] == 1.0
    if arm == "ica_depth1":  # linear ICA on a linear mixture: recovered even at smoke size
        assert m["corr/sources"] > 0.9
    else:
        assert m["tcl/accuracy"] > 1 / 8  # better than chance over 8 segments
        assert [row["step"] for row in record.history] == [100.0, 200.0]
    paper = load_paper(REPO / "experiments" / "time_contrastive_learning" / "claims.yaml")
    for claim in paper.claims:
        if claim.status == "active":
            assert claim.metric in m, claim.id
