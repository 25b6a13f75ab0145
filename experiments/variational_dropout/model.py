"""Variational dropout and the local reparameterization trick.

Kingma, Salimans & Welling, "Variational Dropout and the Local Reparameterization Trick",
NIPS 2015 (arXiv 1506.02557). Noise kinds of `VariationalDropoutMLP`:

- `none`, `bernoulli` (binary dropout, inverted scaling), `gaussian` (multiplicative
  N(1, alpha) noise on each layer's input units, alpha = p / (1 - p), fixed);
- `vardrop_a`: the same unit noise with a learned alpha per input unit (correlated weight
  noise: the whole row of W fed by a unit shares one noise draw);
- `vardrop_b`: independent weight noise q(w_ij) = N(theta_ij, alpha_ij theta_ij^2) with a
  learned alpha per weight, sampled through the local reparameterization trick (`LRTLinear`).

Both learned kinds use the paper's approximation of the KL divergence to the log-uniform
prior, -KL = const + 0.5 log alpha + c1 alpha + c2 alpha^2 + c3 alpha^3, with alpha clipped
at `alpha_max` (1 in the paper). Evaluation always uses the mean network (no noise).

`gradient_variance` measures the variance of the minibatch gradient over noise draws for
the three estimators of the paper's Table 1: the local trick (`lrt`), separate weight
samples per example (`per_example`) and one weight sample shared by the minibatch (`shared`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

# The paper's polynomial fit of -KL(q(w) || p(w)) for the log-uniform prior (section 3.3).
C1, C2, C3 = 1.16145124, -1.50204118, 0.58629921
NOISE_KINDS = ("none", "bernoulli", "gaussian", "vardrop_a", "vardrop_b")
ESTIMATORS = ("lrt", "per_example", "shared")


def neg_kl_approx(log_alpha: torch.Tensor) -> torch.Tensor:
    """-KL per noise variable, up to an additive constant: 0.5 log a + c1 a + c2 a^2 + c3 a^3."""
    alpha = log_alpha.exp()
    return 0.5 * log_alpha + C1 * alpha + C2 * alpha**2 + C3 * alpha**3


def _clipped(log_alpha: torch.Tensor, alpha_max: float) -> torch.Tensor:
    return log_alpha.clamp(max=math.log(alpha_max))


class UnitNoise(nn.Module):
    """Multiplicative noise on a layer's input units (dropout in the usual sense).

    `kind`: `none`; `bernoulli` (keep with probability 1 - p, scaled by 1 / (1 - p));
    `gaussian` (x * N(1, alpha), alpha = p / (1 - p)); `learned` (alpha per unit, trained).
    """

    def __init__(
        self,
        features: int,
        kind: str,
        p: float = 0.5,
        alpha_init: float = 0.1,
        alpha_max: float = 1.0,
    ):
        super().__init__()
        if kind not in ("none", "bernoulli", "gaussian", "learned"):
            raise ValueError(f"unit noise {kind!r}: use none, bernoulli, gaussian or learned")
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout rate p={p}: must be in [0, 1)")
        self.kind, self.p, self.alpha_max = kind, p, alpha_max
        if kind == "learned":
            self.log_alpha = nn.Parameter(torch.full((features,), math.log(alpha_init)))

    def alpha(self) -> torch.Tensor | float:
        if self.kind == "learned":
            return _clipped(self.log_alpha, self.alpha_max).exp()
        return self.p / (1.0 - self.p)

    def _quiet(self) -> bool:
        return not self.training or self.kind == "none" or (self.kind != "learned" and self.p == 0)

    def draw(self, x: torch.Tensor) -> torch.Tensor | None:
        """This layer's noise for input `x`, from the global RNG (None: no noise). Binary
        dropout's mask comes pre-scaled, drawn and scaled as `F.dropout` does on a CPU
        (bernoulli_, then div_), so a run gives the numbers it gave with `F.dropout`."""
        if self._quiet():
            return None
        if self.kind == "bernoulli":
            return torch.empty_like(x).bernoulli_(1.0 - self.p).div_(1.0 - self.p)
        return torch.randn_like(x)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """`noise`: what `draw` gave for this input (drawn here when None)."""
        if self._quiet():
            return x
        if noise is None:
            noise = self.draw(x)
        if self.kind == "bernoulli":
            return x * noise
        alpha = self.alpha()
        std = alpha.sqrt() if torch.is_tensor(alpha) else math.sqrt(alpha)
        return x * (1.0 + std * noise)

    def neg_kl(self) -> torch.Tensor | None:
        """Sum of -KL over this layer's noise variables (one per unit); None if not learned."""
        if self.kind != "learned":
            return None
        return neg_kl_approx(_clipped(self.log_alpha, self.alpha_max)).sum()


class LRTLinear(nn.Module):
    """Linear layer with independent Gaussian weight noise, q(w_ij) = N(theta_ij, alpha_ij theta_ij^2).

    The local reparameterization trick samples the pre-activations instead of the weights:
    b = x theta^T + bias + sqrt(x^2 (alpha theta^2)^T) * eps, with eps independent per example
    and unit. `estimator` switches to the two weight-sampling estimators it replaces
    (`per_example`: a weight sample per example; `shared`: one for the whole minibatch).
    The bias carries no noise.
    """

    def __init__(
        self, in_features: int, out_features: int, alpha_init: float = 0.1, alpha_max: float = 1.0
    ):
        super().__init__()
        base = nn.Linear(in_features, out_features)
        self.weight = nn.Parameter(base.weight.detach().clone())
        self.bias = nn.Parameter(base.bias.detach().clone())
        self.log_alpha = nn.Parameter(torch.full((out_features, in_features), math.log(alpha_init)))
        self.alpha_max = alpha_max
        self.estimator = "lrt"

    def alpha(self) -> torch.Tensor:
        return _clipped(self.log_alpha, self.alpha_max).exp()

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """`noise`: the local trick's standard normal draws, (batch, out) (drawn here when None)."""
        if not self.training:
            return F.linear(x, self.weight, self.bias)
        if self.estimator == "lrt":
            mean = F.linear(x, self.weight, self.bias)
            var = F.linear(x * x, self.alpha() * self.weight**2)
            if noise is None:
                noise = torch.randn_like(mean)
            return mean + var.clamp_min(1e-16).sqrt() * noise
        std = self.alpha().sqrt() * self.weight.abs()
        if self.estimator == "shared":
            w = self.weight + std * torch.randn_like(self.weight)
            return F.linear(x, w, self.bias)
        if self.estimator == "per_example":
            eps = torch.randn(x.shape[0], *self.weight.shape, device=x.device, dtype=x.dtype)
            w = self.weight + std * eps  # (batch, out, in)
            return torch.bmm(w, x.unsqueeze(-1)).squeeze(-1) + self.bias
        raise ValueError(f"estimator {self.estimator!r}: use one of {ESTIMATORS}")

    def neg_kl(self) -> torch.Tensor:
        return neg_kl_approx(_clipped(self.log_alpha, self.alpha_max)).sum()


class VariationalDropoutMLP(nn.Module):
    """ReLU MLP `in -> hidden... -> out` with one of `NOISE_KINDS` on every weight layer.

    Unit noise (`bernoulli`, `gaussian`, `vardrop_a`) acts on each layer's input, the image
    pixels included (rate `p_input` there, `p_hidden` elsewhere; learned alphas all start at
    `alpha_init`). `vardrop_b` puts its noise on every weight matrix instead.
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden: Iterable[int] = (100, 100, 100),
        out_features: int = 10,
        noise: str = "none",
        p_input: float = 0.2,
        p_hidden: float = 0.5,
        alpha_init: float = 0.1,
        alpha_max: float = 1.0,
    ):
        super().__init__()
        if noise not in NOISE_KINDS:
            raise ValueError(f"noise {noise!r}: choose one of {NOISE_KINDS}")
        if not 0.0 < alpha_init < alpha_max:
            raise ValueError(
                f"alpha_init={alpha_init} must lie in (0, alpha_max={alpha_max}): "
                "at the clip its gradient is zero and it never moves"
            )
        self.noise = noise
        widths = [in_features, *hidden, out_features]
        self.noises = nn.ModuleList()
        self.linears = nn.ModuleList()
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            p = p_input if i == 0 else p_hidden
            if noise == "vardrop_b":
                self.noises.append(UnitNoise(n_in, "none"))
                self.linears.append(LRTLinear(n_in, n_out, alpha_init, alpha_max))
                continue
            kind = {"vardrop_a": "learned"}.get(noise, noise)
            self.noises.append(UnitNoise(n_in, kind, p, alpha_init, alpha_max))
            self.linears.append(nn.Linear(n_in, n_out))

    def draw_noise(self, x: torch.Tensor) -> list[tuple[torch.Tensor | None, torch.Tensor | None]]:
        """Every draw a training forward pass of `x` makes, in the order it makes them (per
        layer: unit noise on its input, then the local trick's noise on its output), from the
        global RNG: `forward(x, draw_noise(x))` computes exactly what `forward(x)` does."""
        out = []
        rows = x.shape[0]
        for noise, linear in zip(self.noises, self.linears):
            n_out, n_in = linear.weight.shape
            unit = noise.draw(x.new_empty(rows, n_in))
            lrt = None
            if isinstance(linear, LRTLinear) and self.training and linear.estimator == "lrt":
                lrt = torch.randn(rows, n_out, dtype=x.dtype, device=x.device)
            out.append((unit, lrt))
        return out

    def forward(
        self,
        x: torch.Tensor,
        noise: list[tuple[torch.Tensor | None, torch.Tensor | None]] | None = None,
    ) -> torch.Tensor:
        """`noise`: what `draw_noise(x)` gave (each layer draws its own when None)."""
        last = len(self.linears) - 1
        for i, (unit, linear) in enumerate(zip(self.noises, self.linears)):
            u, w = noise[i] if noise is not None else (None, None)
            x = unit(x, u)
            x = linear(x, w) if isinstance(linear, LRTLinear) else linear(x)
            if i < last:
                x = F.relu(x)
        return x

    def stacked_forward(
        self,
        params: dict[str, torch.Tensor],
        x: torch.Tensor,
        noise: list[tuple[torch.Tensor | None, torch.Tensor | None]],
    ) -> torch.Tensor:
        """S stacked copies of this network in training mode on `x` (S, batch, in), with
        batched matrix products: `params` stacked on dim 0 (named as `named_parameters`
        names them), `noise` what each copy's `draw_noise` gave, stacked on dim 0. The same
        operations as `forward(x, noise)` per copy."""
        last = len(self.linears) - 1
        for i, (unit, linear) in enumerate(zip(self.noises, self.linears)):
            u, eps = noise[i]
            if u is not None:
                if unit.kind == "bernoulli":
                    x = x * u
                else:
                    if unit.kind == "learned":
                        log_alpha = params[f"noises.{i}.log_alpha"]
                        std = _clipped(log_alpha, unit.alpha_max).exp().sqrt().unsqueeze(1)
                    else:
                        std = math.sqrt(unit.alpha())
                    x = x * (1.0 + std * u)
            w, b = params[f"linears.{i}.weight"], params[f"linears.{i}.bias"]
            mean = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
            if isinstance(linear, LRTLinear):
                alpha = _clipped(params[f"linears.{i}.log_alpha"], linear.alpha_max).exp()
                var = torch.bmm(x * x, (alpha * w**2).transpose(1, 2))
                mean = mean + var.clamp_min(1e-16).sqrt() * eps
            x = F.relu(mean) if i < last else mean
        return x

    def stacked_kl(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """`kl()` of each of S stacked copies, (S,)."""
        terms = []
        for i, (unit, linear) in enumerate(zip(self.noises, self.linears)):
            if unit.kind == "learned":
                la = _clipped(params[f"noises.{i}.log_alpha"], unit.alpha_max)
                terms.append(neg_kl_approx(la).flatten(1).sum(1))
            if isinstance(linear, LRTLinear):
                la = _clipped(params[f"linears.{i}.log_alpha"], linear.alpha_max)
                terms.append(neg_kl_approx(la).flatten(1).sum(1))
        if not terms:
            return None
        return -torch.stack(terms).sum(0)

    def kl(self) -> torch.Tensor:
        """The approximate KL term of the bound (up to a constant); 0 for fixed-noise kinds."""
        terms = [m.neg_kl() for m in self.modules() if isinstance(m, UnitNoise | LRTLinear)]
        terms = [t for t in terms if t is not None]
        if not terms:
            return torch.zeros((), device=self.linears[0].weight.device)
        return -torch.stack(terms).sum()

    @torch.no_grad()
    def mean_alphas(self) -> list[float]:
        """Mean alpha of each weight layer's noise (fixed or learned), for the run history."""
        out = []
        for noise, linear in zip(self.noises, self.linears):
            if isinstance(linear, LRTLinear):
                a = linear.alpha()
            else:  # binary dropout's mask / (1 - p) has the same variance, p / (1 - p)
                a = 0.0 if noise.kind == "none" else noise.alpha()
            out.append(float(a.mean()) if torch.is_tensor(a) else float(a))
        return out

    def set_estimator(self, estimator: str) -> None:
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator {estimator!r}: use one of {ESTIMATORS}")
        for m in self.modules():
            if isinstance(m, LRTLinear):
                m.estimator = estimator


def gradient_variance(
    model: VariationalDropoutMLP,
    x: torch.Tensor,
    y: torch.Tensor,
    estimator: str,
    draws: int = 100,
    chunk: int = 25,
) -> dict[str, float]:
    """Variance over `draws` noise draws of d(mean minibatch cross-entropy)/d(theta) on one
    fixed minibatch, averaged over the elements of the bottom and the top weight matrix.

    Only the data term is differentiated: the KL term's gradient carries no noise, so it
    adds nothing to the variance. `per_example` runs the minibatch in chunks of `chunk`
    examples to bound the memory of per-example weight samples (the noise is independent
    per example, so chunking changes nothing). The model's mode and estimator are restored.
    """
    if not any(isinstance(m, LRTLinear) for m in model.modules()):
        raise ValueError("gradient_variance needs a model with weight noise (noise=vardrop_b)")
    if draws < 2:
        raise ValueError("draws must be at least 2 to estimate a variance")
    weights = {"bottom": model.linears[0].weight, "top": model.linears[-1].weight}
    total = {k: torch.zeros_like(w, dtype=torch.float64) for k, w in weights.items()}
    total_sq = {k: torch.zeros_like(w, dtype=torch.float64) for k, w in weights.items()}
    shift: dict[str, torch.Tensor] = {}
    step = chunk if estimator == "per_example" else len(x)
    was_training = model.training
    model.train()
    model.set_estimator(estimator)
    try:
        with torch.enable_grad():
            for _ in range(draws):
                grad = {k: torch.zeros_like(w) for k, w in weights.items()}
                for i in range(0, len(x), step):
                    logits = model(x[i : i + step])
                    loss = F.cross_entropy(logits, y[i : i + step], reduction="sum") / len(x)
                    for k, g in zip(weights, torch.autograd.grad(loss, list(weights.values()))):
                        grad[k] += g
                shift = shift or {k: g.double() for k, g in grad.items()}  # for precision
                for k, g in grad.items():
                    d = g.double() - shift[k]
                    total[k] += d
                    total_sq[k] += d**2
    finally:
        model.set_estimator("lrt")
        model.train(was_training)
    return {k: float(((total_sq[k] - total[k] ** 2 / draws) / (draws - 1)).mean()) for k in weights}
