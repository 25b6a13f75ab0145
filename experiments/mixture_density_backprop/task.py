"""Unbiasedness and variance of gradient estimators through Gaussian-mixture samples.

An evaluate-only task (`fit_free`): its one validation pass is the study. For the seed's
random mixture (model.random_mixture) and test function g(x) = cos(w . x) + c |x|^2:

1. the exact gradient of E[g(x)] with respect to theta = (logits, means, log-sigmas), by
   autograd of the closed-form expectation, checked against central finite differences;
2. `n_samples` samples, each with its own per-sample gradient from three estimators:
   Graves's Eq. 6 through ancestral sampling (`graves`), the score function (`sf`) and the
   score function with a leave-one-out baseline (`sf_loo`, unbiased); for each parameter
   z = (mean - exact) / (std / sqrt(N)), and the per-sample variances;
3. the closed form of integral df/da_j (model.logit_integral_closed_form) against
   quadrature of df/da_j from autograd, on the first coordinate's 1-D marginal mixture;
4. per sample, Graves's gradients with respect to means and log-sigmas against the
   ordinary reparameterisation x = mu_k + sigma_k * eps of the sampled component
   (identical for one component; different per sample, equal in mean, for several).

Under unbiasedness each z is approximately standard normal; `graves/max_abs_z` is the
largest over the P parameters (the claims' threshold is Bonferroni at alpha = 0.001).
"""

from __future__ import annotations

import time

import torch

from experiments.mixture_density_backprop.model import (
    MixtureGradientStudy,
    exact_expectation,
    graves_sample,
    logit_integral_closed_form,
    mixture_logpdf,
    normal_logpdf,
    random_mixture,
    sample_mixture,
    test_function,
)
from shortsci_bench.tasks.base import HarnessTask

ESTIMATORS = ("graves", "sf", "sf_loo")


def flat(a, mu, log_sigma):
    return torch.cat([a.reshape(-1), mu.reshape(-1), log_sigma.reshape(-1)])


def exact_gradient(params: dict, c: float) -> torch.Tensor:
    a, mu, ls = (params[k].clone().requires_grad_() for k in ("a", "mu", "log_sigma"))
    grads = torch.autograd.grad(exact_expectation(a, mu, ls, params["w"], c), [a, mu, ls])
    return flat(*grads)


def finite_difference_gradient(params: dict, c: float, h: float) -> torch.Tensor:
    theta = flat(params["a"], params["mu"], params["log_sigma"])
    K, D = params["mu"].shape
    out = torch.empty_like(theta)

    def value(t):
        return exact_expectation(
            t[:K], t[K : K + K * D].view(K, D), t[K + K * D :].view(K, D), params["w"], c
        )

    for i in range(len(theta)):
        e = torch.zeros_like(theta)
        e[i] = h
        out[i] = (value(theta + e) - value(theta - e)) / (2 * h)
    return out


def per_sample_gradients(params: dict, x_hat, comp, c: float) -> dict[str, torch.Tensor]:
    """(m, P) per-sample gradients of each estimator, and Graves's and the ordinary
    reparameterisation's gradients with respect to means and log-sigmas."""
    m = len(x_hat)
    K, D = params["mu"].shape

    def batched():
        return [
            params[k].expand(m, *params[k].shape).clone().requires_grad_()
            for k in ("a", "mu", "log_sigma")
        ]

    w = params["w"]
    out = {}
    a, mu, ls = batched()
    g = test_function(graves_sample(a, mu, ls, x_hat), w, c)
    out["graves"] = flat_rows(torch.autograd.grad(g.sum(), [a, mu, ls]))
    a, mu, ls = batched()
    score = flat_rows(torch.autograd.grad(mixture_logpdf(a, mu, ls, x_hat).sum(), [a, mu, ls]))
    gx = test_function(x_hat, w, c)
    out["sf"] = gx[:, None] * score
    baseline = (gx.sum() - gx) / (m - 1)  # leave-one-out: independent of sample i
    out["sf_loo"] = (gx - baseline)[:, None] * score
    # the ordinary reparameterisation of the sampled component (means, log-sigmas only)
    _, mu, ls = batched()
    idx = torch.arange(m)
    eps = (x_hat - params["mu"][comp]) * torch.exp(-params["log_sigma"][comp])
    x_rep = mu[idx, comp] + torch.exp(ls[idx, comp]) * eps
    gr = torch.autograd.grad(test_function(x_rep, w, c).sum(), [mu, ls])
    out["reparam_mu_ls"] = torch.cat([gr[0].reshape(m, -1), gr[1].reshape(m, -1)], 1)
    out["graves_mu_ls"] = out["graves"][:, K:]
    return out


def flat_rows(grads) -> torch.Tensor:
    return torch.cat([t.reshape(t.shape[0], -1) for t in grads], 1)


def closed_form_check(params: dict, n_points: int, gen: torch.Generator) -> dict[str, float]:
    """The logit integral's closed form against quadrature (trapezoid, 20,001 points from
    12 sigma below the lowest component) of df/da_j from autograd, on the 1-D marginal of
    the first coordinate; and Graves's 1-D dx/da_j from autograd against -closed / f."""
    a, mu, ls = params["a"], params["mu"][:, 0], params["log_sigma"][:, 0]
    x, _ = sample_mixture(a, mu[:, None], ls[:, None], n_points, gen)
    x = x[:, 0]
    closed = logit_integral_closed_form(a, mu, ls, x)  # (M, K)
    lo = float((mu - 12 * torch.exp(ls)).min())
    err = 0.0
    for i, xi in enumerate(x):
        t = torch.linspace(lo, float(xi), 20001, dtype=x.dtype)
        dens = torch.exp(normal_logpdf(t[:, None], mu, ls))  # (T, K)

        def f(al, dens=dens):
            return (torch.softmax(al, -1) * dens).sum(-1)

        # (T, K): df(t)/da_j, forward mode: K passes, not one per grid point
        jac = torch.autograd.functional.jacobian(f, a, vectorize=True, strategy="forward-mode")
        err = max(err, float((torch.trapezoid(jac, t, dim=0) - closed[i]).abs().max()))
    m = len(x)
    ab = a.expand(m, -1).clone().requires_grad_()
    xs = graves_sample(
        ab, mu[None, :, None].expand(m, -1, 1), ls[None, :, None].expand(m, -1, 1), x[:, None]
    )
    auto = torch.autograd.grad(xs.sum(), ab)[0]
    f_x = (torch.softmax(a, -1) * torch.exp(normal_logpdf(x[:, None], mu, ls))).sum(-1)
    formula = -closed / f_x[:, None]
    return {
        "closed_form/max_abs_err": err,
        "closed_form/graves_vs_formula_max_err": float((auto - formula).abs().max()),
    }


class MixtureGradientTask(HarnessTask):
    fit_free = True  # run.py calls trainer.validate: the study below is the whole run

    def __init__(self, model: MixtureGradientStudy, optimizer=None, scheduler=None, seed=0):
        super().__init__(optimizer, scheduler)
        self.model = self.study = model
        self.seed = int(seed)

    def validation_step(self, batch, batch_idx):
        with torch.enable_grad():  # validation runs under no_grad (trainer.inference_mode=false)
            self._study()

    def _study(self):
        t0 = time.perf_counter()
        st = self.study
        params = random_mixture(st.components, st.dims, self.seed)
        gen = torch.Generator().manual_seed(self.seed + 1)
        row: dict[str, float] = {"step": 0.0}
        exact = exact_gradient(params, st.quad_c)
        fd = finite_difference_gradient(params, st.quad_c, st.fd_step)
        row["exact/fd_max_abs_err"] = float((exact - fd).abs().max())
        row["exact/grad_max_abs"] = float(exact.abs().max())
        P, K = len(exact), st.components
        sums = {e: torch.zeros(P, dtype=exact.dtype) for e in ESTIMATORS}
        sq = {e: torch.zeros(P, dtype=exact.dtype) for e in ESTIMATORS}
        reparam_diff, reparam_sum = 0.0, torch.zeros(P - K, dtype=exact.dtype)
        done = 0
        while done < st.n_samples:
            m = min(st.chunk, st.n_samples - done)
            x_hat, comp = sample_mixture(params["a"], params["mu"], params["log_sigma"], m, gen)
            grads = per_sample_gradients(params, x_hat, comp, st.quad_c)
            for e in ESTIMATORS:
                sums[e] += grads[e].sum(0)
                sq[e] += (grads[e] ** 2).sum(0)
            diff = (grads["graves_mu_ls"] - grads["reparam_mu_ls"]).abs().max()
            reparam_diff = max(reparam_diff, float(diff))
            reparam_sum += grads["reparam_mu_ls"].sum(0)
            done += m
        N = st.n_samples
        var = {}
        for e in ESTIMATORS:
            mean = sums[e] / N
            var[e] = (sq[e] / N - mean**2) * N / (N - 1)
            z = (mean - exact) / torch.sqrt(var[e] / N)
            row[f"{e}/max_abs_z"] = float(z.abs().max())
            row[f"{e}/max_abs_z_logits"] = float(z[:K].abs().max())
            row[f"{e}/max_abs_bias"] = float((mean - exact).abs().max())
            row[f"variance/{e}_mean"] = float(var[e].mean())
            row[f"variance/{e}_logits_mean"] = float(var[e][:K].mean())
        for e in ("sf", "sf_loo"):
            ratio = var[e] / var["graves"]
            row[f"variance/ratio_{e}_over_graves"] = float(torch.exp(torch.log(ratio).mean()))
            row[f"variance/ratio_{e}_over_graves_logits"] = float(
                torch.exp(torch.log(ratio[:K]).mean())
            )
        row["reparam/max_abs_diff"] = reparam_diff
        row["reparam/mean_abs_diff_of_means"] = float(
            (reparam_sum / N - sums["graves"][K:] / N).abs().max()
        )
        row.update(closed_form_check(params, 16, gen))
        row["n_params"] = float(P)
        self.history.append(row)
        for logger in self.loggers:
            logger.log_metrics({k: v for k, v in row.items() if k != "step"}, step=0)
        self._train_seconds, self._train_steps = time.perf_counter() - t0, 1
