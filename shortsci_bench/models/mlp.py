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

    @torch.no_grad()
    def pre_activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each hidden layer's input to its nonlinearity, in the module's current mode."""
        out = []
        for lin, norm in zip(self.linears, self.norms):
            z = norm(lin(x))
            out.append(z)
            x = self.act(z)
        return out
