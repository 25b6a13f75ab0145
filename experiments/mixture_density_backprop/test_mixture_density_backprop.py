"""mixture_reparam: Graves's Eq. 6 estimator against the exact gradient (unbiasedness with a
tolerance fixed from the standard error, and a biased estimator that the same check
catches), the exact gradient against finite differences, the logit integral's closed form
against scipy quadrature, the one-Gaussian case against the ordinary reparameterisation,
and a smoke run end to end."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate, stats

from experiments.mixture_density_backprop.model import (
    graves_sample,
    logit_integral_closed_form,
    random_mixture,
    sample_mixture,
)
from experiments.mixture_density_backprop.task import (
    exact_gradient,
    finite_difference_gradient,
    per_sample_gradients,
)
from shortsci_bench.claims.schema import load_paper
from tests.conftest import REPO, run_cfg

C = 0.1
# Bonferroni over at most 15 parameters at alpha = 1e-4: |z| beyond this is a failure.
Z_TOL = float(stats.norm.ppf(1 - 1e-4 / (2 * 15)))  # 4.35


def _z(per_sample: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    n = per_sample.shape[0]
    return (per_sample.mean(0) - exact) / (per_sample.std(0) / math.sqrt(n))


@pytest.mark.parametrize("k,d,seed", [(3, 1, 0), (3, 2, 1), (2, 3, 2)])
def test_graves_estimator_is_unbiased(k, d, seed):
    params = random_mixture(k, d, seed)
    exact = exact_gradient(params, C)
    x, comp = sample_mixture(
        params["a"], params["mu"], params["log_sigma"], 40000, torch.Generator().manual_seed(9)
    )
    grads = per_sample_gradients(params, x, comp, C)
    for est in ("graves", "sf", "sf_loo"):
        assert _z(grads[est], exact).abs().max() <= Z_TOL, est
    # The check has power: the component-wise reparameterisation, which ignores how the
    # sample moves with the mixing logits (gradient 0 for them), is biased there.
    biased = torch.cat([torch.zeros(len(x), k, dtype=x.dtype), grads["reparam_mu_ls"]], 1)
    assert _z(biased, exact)[:k].abs().max() > Z_TOL or exact[:k].abs().max() < 1e-3


def test_exact_gradient_matches_finite_differences():
    params = random_mixture(3, 2, 5)
    exact = exact_gradient(params, C)
    fd = finite_difference_gradient(params, C, 1e-5)
    assert torch.allclose(exact, fd, atol=1e-8)
    assert exact.abs().max() > 1e-2  # not trivially zero


def test_logit_integral_closed_form_against_quadrature():
    params = random_mixture(3, 1, 3)
    a, mu, ls = params["a"], params["mu"][:, 0], params["log_sigma"][:, 0]
    pi = torch.softmax(a, -1).tolist()
    sig = torch.exp(ls).tolist()
    xs = torch.tensor([-3.0, -0.5, 0.2, 1.7, 4.0], dtype=torch.float64)
    closed = logit_integral_closed_form(a, mu, ls, xs)

    def dens(t, j):
        return stats.norm.pdf(t, float(mu[j]), sig[j])

    for i, x in enumerate(xs.tolist()):
        for j in range(3):
            # df/da_j = pi_j (N_j(t) - f(t)) for softmax logits
            def df(t, j=j):
                return pi[j] * (dens(t, j) - sum(pi[k] * dens(t, k) for k in range(3)))

            val, _ = integrate.quad(df, -math.inf, x, epsabs=1e-12)
            assert float(closed[i, j]) == pytest.approx(val, abs=1e-9)


def test_graves_1d_gradient_is_eq6():
    """autograd through the surrogate = -(integral df/da_j) / f(x), Eq. 6 by hand."""
    params = random_mixture(3, 1, 4)
    a, mu, ls = params["a"], params["mu"], params["log_sigma"]
    x = torch.tensor([[-1.0], [0.3], [2.2]], dtype=torch.float64)
    ab = a.expand(3, -1).clone().requires_grad_()
    xs = graves_sample(ab, mu.expand(3, -1, -1), ls.expand(3, -1, -1), x)
    assert torch.equal(xs.detach(), x)  # the surrogate's value is the sample itself
    auto = torch.autograd.grad(xs.sum(), ab)[0]
    pi, sig = torch.softmax(a, -1), torch.exp(ls[:, 0])
    f = (pi * torch.exp(-0.5 * ((x - mu[:, 0]) / sig) ** 2) / (sig * math.sqrt(2 * math.pi))).sum(
        -1
    )
    want = -logit_integral_closed_form(a, mu[:, 0], ls[:, 0], x[:, 0]) / f[:, None]
    assert torch.allclose(auto, want, atol=1e-12)


def test_one_gaussian_equals_the_reparameterisation_trick():
    params = random_mixture(1, 2, 6)
    x, comp = sample_mixture(
        params["a"], params["mu"], params["log_sigma"], 1000, torch.Generator().manual_seed(1)
    )
    grads = per_sample_gradients(params, x, comp, C)
    assert torch.allclose(grads["graves_mu_ls"], grads["reparam_mu_ls"], atol=1e-12)
    # with several components the per-sample gradients differ (equal only in mean)
    params = random_mixture(3, 2, 6)
    x, comp = sample_mixture(
        params["a"], params["mu"], params["log_sigma"], 1000, torch.Generator().manual_seed(1)
    )
    grads = per_sample_gradients(params, x, comp, C)
    assert (grads["graves_mu_ls"] - grads["reparam_mu_ls"]).abs().max() > 1e-3


def test_smoke_run(tmp_path):
    rec = run_cfg(["+experiment=mixture_reparam", "tier=smoke", "arm=gmm_2d"], tmp_path)
    assert rec.status == "completed"
    m = rec.metrics
    assert m["exact/fd_max_abs_err"] < 1e-8 and m["closed_form/max_abs_err"] < 1e-7
    assert m["n_params"] == 15 and m["graves/max_abs_z"] < Z_TOL


def test_claims_name_this_experiment():
    paper = load_paper(REPO / "experiments" / "mixture_density_backprop" / "claims.yaml")
    active = [c for c in paper.claims if c.status == "active"]
    assert active and all(c.experiment == "mixture_reparam" for c in active)
