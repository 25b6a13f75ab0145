"""Fully-connected classifier, optionally with Batch Normalization before each nonlinearity.

Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by Reducing
Internal Covariate Shift", ICML 2015, section 4.1: 3 hidden layers of 100 sigmoid units,
y = g(BN(Wu)) with the bias dropped where BN follows (BN's shift replaces it).
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}


class MLP(nn.Module):
    """`in_features -> hidden... -> out_features`; `pre_activations` keeps each hidden layer's
    input to its nonlinearity (after BN), for the paper's Figure 1 (b, c) probe."""

    def __init__(
        self,
        in_features: int = 784,
        hidden: tuple[int, ...] | list[int] = (100, 100, 100),
        out_features: int = 10,
        activation: str = "sigmoid",
        batchnorm: bool = False,
        init_std: float | None = None,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r}: choose one of {sorted(ACTIVATIONS)}")
        self.batchnorm = batchnorm
        self.linears = nn.ModuleList()
        self.norms = nn.ModuleList()
        width = in_features
        for h in hidden:
            self.linears.append(nn.Linear(width, h, bias=not batchnorm))
            self.norms.append(nn.BatchNorm1d(h) if batchnorm else nn.Identity())
            width = h
        self.act = ACTIVATIONS[activation]()
        self.head = nn.Linear(width, out_features)
        if init_std is not None:  # the paper: "small random Gaussian values"
            for lin in [*self.linears, self.head]:
                nn.init.normal_(lin.weight, std=init_std)
                if lin.bias is not None:
                    nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for lin, norm in zip(self.linears, self.norms):
            x = self.act(norm(lin(x)))
        return self.head(x)

    def stacked_forward(
        self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor
    ) -> torch.Tensor:
        """S stacked copies of this network on `x` (S, batch, in) -> (S, batch, out), with
        batched matrix products; `params` and `buffers` are stacked on dim 0 as
        `torch.func.stack_module_state` gives them, named as `named_parameters` names them.
        Batch norm (training mode) normalizes each copy by its own batch statistics and
        updates its running statistics in place, as `nn.BatchNorm1d` does."""
        for i, norm in enumerate(self.norms):
            z = _stacked_linear(x, params[f"linears.{i}.weight"], params.get(f"linears.{i}.bias"))
            if self.batchnorm:
                z = stacked_batchnorm(norm, z, params, buffers, f"norms.{i}.")
            x = self.act(z)
        return _stacked_linear(x, params["head.weight"], params.get("head.bias"))

    @torch.no_grad()
    def pre_activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each hidden layer's input to its nonlinearity, in the module's current mode."""
        out = []
        for lin, norm in zip(self.linears, self.norms):
            z = norm(lin(x))
            out.append(z)
            x = self.act(z)
        return out


def _stacked_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """`F.linear` for S stacked layers: x (S, batch, in), weight (S, out, in), bias (S, out)."""
    if bias is None:
        return torch.bmm(x, weight.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def stacked_batchnorm(
    norm: nn.BatchNorm1d,
    z: torch.Tensor,
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    prefix: str,
) -> torch.Tensor:
    """`norm` (training mode) for S stacked copies: z (S, batch, features); each copy's batch
    mean and biased variance normalize it, and its running mean and unbiased variance move by
    `momentum`, in place in `buffers`, as `F.batch_norm` does for one copy."""
    if not norm.training or norm.momentum is None or not norm.track_running_stats:
        raise ValueError("stacked batch norm covers training mode with a fixed momentum only")
    mean = z.mean(1, keepdim=True)
    var = z.var(1, unbiased=False, keepdim=True)
    out = (z - mean) * torch.rsqrt(var + norm.eps)
    if norm.affine:
        out = out * params[f"{prefix}weight"].unsqueeze(1) + params[f"{prefix}bias"].unsqueeze(1)
    with torch.no_grad():
        n, m = z.shape[1], norm.momentum
        buffers[f"{prefix}running_mean"].mul_(1 - m).add_(mean.squeeze(1), alpha=m)
        unbiased = var.squeeze(1) * (n / max(n - 1, 1))
        buffers[f"{prefix}running_var"].mul_(1 - m).add_(unbiased, alpha=m)
        buffers[f"{prefix}num_batches_tracked"].add_(1)
    return out
