"""Gradients through samples of a Gaussian mixture: Graves, "Stochastic Backpropagation
through Mixture Density Distributions" (arXiv 1607.05690, 2016).

A diagonal Gaussian mixture in D dimensions with K components has parameters
theta = (a, mu, log_sigma): mixing logits a (K,) (pi = softmax(a)), means mu (K, D) and
log standard deviations (K, D). A sample is drawn ancestrally, x_d from the 1-D
conditional mixture f(x_d | x_<d), whose weights are the posterior weights of the
components given x_<d. Graves's Eq. 6 gives the gradient of a sample x with respect to
any parameter of a 1-D density with tractable CDF F:

    dx/dtheta = -(1 / f(x)) * integral_{-inf}^{x} df(t)/dtheta dt = -(dF(x)/dtheta) / f(x)

(the seed's copy lost the minus sign), and the chain rule carries it through the ancestral
sampling: dx_d = -(dF_d(x_d | x_<d) / dtheta + sum_{d'<d} dF_d/dx_d' dx_d') / f_d(x_d | x_<d).
`graves_sample` builds this as a surrogate, x_d + (F_d - stop(F_d)) * (-1 / stop(f_d)),
whose value is the sample and whose autograd derivative is Eq. 6 with the chain rule.
For a mixing logit of a 1-D mixture the integral is closed-form (the role of the paper's
Eq. 22, here for softmax logits): integral df/da_j = pi_j (Phi_j(x) - F(x)).

Compared with: the score-function estimator g(x) d log p(x)/dtheta (plain, and with a
leave-one-out baseline), and the exact gradient of E[g(x)] for
g(x) = cos(w . x) + c |x|^2, whose expectation under each Gaussian is closed-form.

Every function takes batched parameters (a leading sample axis), so one autograd pass
gives every sample's own gradient (needed for variances).
"""

from __future__ import annotations

import math

import torch
from torch import nn

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def normal_logpdf(x, mu, log_sigma):
    z = (x - mu) * torch.exp(-log_sigma)
    return -0.5 * z**2 - log_sigma - LOG_SQRT_2PI


def normal_cdf(x, mu, log_sigma):
    return 0.5 * torch.special.erfc(-(x - mu) * torch.exp(-log_sigma) / math.sqrt(2))


def random_mixture(k: int, d: int, seed: int, dtype=torch.float64) -> dict[str, torch.Tensor]:
    """A random mixture and test-function weights, drawn from the seed."""
    g = torch.Generator().manual_seed(int(seed))
    return {
        "a": torch.randn(k, generator=g, dtype=dtype),
        "mu": 2.0 * torch.randn(k, d, generator=g, dtype=dtype),
        "log_sigma": torch.empty(k, d, dtype=dtype).uniform_(
            math.log(0.5), math.log(1.5), generator=g
        ),
        "w": torch.randn(d, generator=g, dtype=dtype),
    }


def test_function(x, w, c: float):
    """g(x) = cos(w . x) + c |x|^2, per sample (x: (N, D))."""
    return torch.cos(x @ w) + c * (x**2).sum(-1)


def exact_expectation(a, mu, log_sigma, w, c: float):
    """E[g(x)] in closed form: sum_k pi_k [cos(w.mu_k) exp(-1/2 sum w^2 sigma^2)
    + c sum (mu^2 + sigma^2)] (unbatched parameters)."""
    pi = torch.softmax(a, -1)
    sigma2 = torch.exp(2 * log_sigma)
    cos_term = torch.cos(mu @ w) * torch.exp(-0.5 * (sigma2 * w**2).sum(-1))
    quad = c * (mu**2 + sigma2).sum(-1)
    return (pi * (cos_term + quad)).sum()


def sample_mixture(a, mu, log_sigma, n: int, gen: torch.Generator):
    """n samples (no gradient) and their components: k from pi, then x ~ N(mu_k, sigma_k).
    The joint is the same as ancestral sampling of the conditionals."""
    with torch.no_grad():
        k = torch.multinomial(torch.softmax(a, -1), n, replacement=True, generator=gen)
        eps = torch.randn(n, mu.shape[1], generator=gen, dtype=mu.dtype)
        return mu[k] + torch.exp(log_sigma[k]) * eps, k


def conditional_weights(a, mu, log_sigma, x_prev):
    """log posterior weights of the components given x_<d (batched: a (N,K), mu (N,K,D'),
    x_prev (N,D')); D' = 0 gives log softmax(a)."""
    logw = torch.log_softmax(a, -1)
    if x_prev.shape[-1]:
        logw = logw + normal_logpdf(x_prev[:, None, :], mu, log_sigma).sum(-1)
    return torch.log_softmax(logw, -1)


def graves_sample(a, mu, log_sigma, x_hat):
    """The surrogate sample: value x_hat, derivative Eq. 6 through ancestral sampling.
    a (N,K), mu and log_sigma (N,K,D) batched with requires_grad; x_hat (N,D) fixed."""
    xs = []
    for d in range(x_hat.shape[1]):
        x_prev = torch.stack(xs, -1) if xs else x_hat[:, :0]
        logw = conditional_weights(a, mu[..., :d], log_sigma[..., :d], x_prev)
        w = torch.exp(logw)
        xd = x_hat[:, d : d + 1]
        F = (w * normal_cdf(xd, mu[..., d], log_sigma[..., d])).sum(-1)
        f = (w * torch.exp(normal_logpdf(xd, mu[..., d], log_sigma[..., d]))).sum(-1)
        xs.append(x_hat[:, d] - (F - F.detach()) / f.detach())
    return torch.stack(xs, -1)


def mixture_logpdf(a, mu, log_sigma, x):
    """log p(x) of the mixture, batched parameters (N, ...) and x (N, D)."""
    comp = normal_logpdf(x[:, None, :], mu, log_sigma).sum(-1)
    return torch.logsumexp(torch.log_softmax(a, -1) + comp, -1)


def logit_integral_closed_form(a, mu, log_sigma, x):
    """integral_{-inf}^{x} df(t)/da_j dt for a 1-D mixture (unbatched a (K,), mu and
    log_sigma (K,), x (M,)): pi_j (Phi_j(x) - F(x)), shape (M, K)."""
    pi = torch.softmax(a, -1)
    phi = normal_cdf(x[:, None], mu[None, :], log_sigma[None, :])
    F = (pi * phi).sum(-1, keepdim=True)
    return pi * (phi - F)


class MixtureGradientStudy(nn.Module):
    """No trainable parameters: the settings of one study (a mixture shape and sample
    counts), so the harness can build it like any model."""

    def __init__(
        self,
        components: int,
        dims: int,
        n_samples: int,
        chunk: int = 50_000,
        quad_c: float = 0.1,
        fd_step: float = 1e-5,
    ):
        super().__init__()
        self.components, self.dims = int(components), int(dims)
        self.n_samples, self.chunk = int(n_samples), int(chunk)
        self.quad_c, self.fd_step = float(quad_c), float(fd_step)
