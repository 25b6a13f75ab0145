"""Deep linear networks, many random initialisations at once, and the Hessian at zero.

Kawaguchi, "Deep Learning without Poor Local Minima", NIPS 2016 (arXiv 1605.07110).
A network with H hidden layers computes W_{H+1} ... W_1 x; its loss is
L = 1/(2m) ||W_{H+1} ... W_1 X - Y||_F^2. `DeepLinearEnsemble` holds `n_inits` independent
networks as one stack of weights per layer, so one batched matmul trains all of them.

At the all-zero point every gradient vanishes. With one hidden layer the Hessian there has
negative eigenvalues (the loss is quadratic in (W_1, W_2) near 0, with a bilinear cross
term); with two or more every second derivative vanishes, the Hessian is zero, and yet the
point is no minimum: a saddle with no negative eigenvalue, the paper's "bad saddle".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def layer_dims(d_x: int, hidden: Sequence[int], d_y: int) -> list[int]:
    return [int(d_x), *(int(h) for h in hidden), int(d_y)]


def linear_net_loss(weights: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor):
    """1/(2m) ||x W_1^T ... W_{H+1}^T - y||^2; weights may carry leading batch dims."""
    out = x
    for w in weights:
        out = out @ w.transpose(-1, -2)
    return ((out - y) ** 2).sum((-2, -1)) / (2 * x.shape[-2])


class DeepLinearEnsemble(nn.Module):
    """`n_inits` deep linear networks d_x -> hidden... -> d_y, no biases.

    Layer i holds a (n_inits, d_{i+1}, d_i) tensor; entries start N(0, init_gain^2 / d_i).
    """

    def __init__(
        self,
        d_x: int = 10,
        d_y: int = 5,
        hidden: Sequence[int] = (8,),
        n_inits: int = 50,
        init_gain: float = 1.0,
    ):
        super().__init__()
        if not hidden:
            raise ValueError("a deep linear network needs at least one hidden layer")
        self.dims = layer_dims(d_x, hidden, d_y)
        self.n_inits = int(n_inits)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(self.n_inits, d_out, d_in) * (init_gain / math.sqrt(d_in)))
            for d_in, d_out in zip(self.dims[:-1], self.dims[1:])
        )

    @property
    def hidden(self) -> list[int]:
        return self.dims[1:-1]

    @property
    def min_width(self) -> int:
        """The narrowest hidden layer: the product's rank is at most this (and d_y)."""
        return min(self.hidden)

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss of each network, shape (n_inits,)."""
        return linear_net_loss(list(self.weights), x, y)

    def product(self) -> torch.Tensor:
        """W_{H+1} ... W_1 for each network, (n_inits, d_y, d_x)."""
        out = self.weights[0]
        for w in self.weights[1:]:
            out = w @ out
        return out


def _unflatten(theta: torch.Tensor, dims: Sequence[int]) -> list[torch.Tensor]:
    mats, i = [], 0
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        mats.append(theta[i : i + d_in * d_out].reshape(d_out, d_in))
        i += d_in * d_out
    return mats


def hessian_eigenvalues(
    x: torch.Tensor, y: torch.Tensor, hidden: Sequence[int], point: torch.Tensor | None = None
) -> torch.Tensor:
    """Eigenvalues (ascending) of the loss's Hessian in all weights of one network, at
    `point` (the weights flattened layer by layer; default: all zero)."""
    dims = layer_dims(x.shape[1], hidden, y.shape[1])
    n_params = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    if point is None:
        point = torch.zeros(n_params, dtype=x.dtype, device=x.device)
    with torch.enable_grad():
        h = torch.autograd.functional.hessian(
            lambda theta: linear_net_loss(_unflatten(theta, dims), x, y), point, vectorize=True
        )
    return torch.linalg.eigvalsh((h + h.T) / 2)


def loss_drop_from_zero(
    x: torch.Tensor, y: torch.Tensor, hidden: Sequence[int], fraction: float = 1e-3
) -> float:
    """L(0) - L(t D) along a rank-one path out of the zero point: W_1 = t e_1 v^T, middle
    layers t e_1 e_1^T, W_{H+1} = t u e_1^T, with (u, v) the top singular pair of Y X^T.
    The product is t^{H+1} u v^T; t^{H+1} is `fraction` of the best step along it, so a
    positive drop at a small step shows the zero point is not a local minimum."""
    dims = layer_dims(x.shape[1], hidden, y.shape[1])
    m = y.T @ x / len(x)
    u_all, s, vh = torch.linalg.svd(m)
    u, v = u_all[:, 0], vh[0]
    best = float(s[0] / (v @ (x.T @ x / len(x)) @ v))
    t = (fraction * best) ** (1.0 / (len(dims) - 1))
    mats = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        w = torch.zeros(d_out, d_in, dtype=x.dtype, device=x.device)
        left = u if i == len(dims) - 2 else torch.eye(d_out, dtype=x.dtype, device=x.device)[0]
        right = v if i == 0 else torch.eye(d_in, dtype=x.dtype, device=x.device)[0]
        w += t * torch.outer(left, right)
        mats.append(w)
    zero = [torch.zeros_like(w) for w in mats]
    return float(linear_net_loss(zero, x, y) - linear_net_loss(mats, x, y))
