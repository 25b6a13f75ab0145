"""Weight normalization, mean-only batch normalization and the paper's CIFAR-10 network.

Salimans & Kingma, "Weight Normalization: A Simple Reparameterization to Accelerate
Training of Deep Neural Networks", NIPS 2016 (arXiv 1602.07868), sections 2-4 and 5.1.

- Weight normalization: w = g v / ||v|| per output unit (section 2), with v ~ N(0, 0.05^2).
- Data-dependent initialisation (section 3): one batch through the network; each layer
  sets g <- 1/sigma and b <- -mu/sigma from its pre-activations t = v.x/||v||, so every
  feature starts zero-mean and unit-variance, layer after layer.
- Mean-only batch normalization (section 4): t - mean_batch(t) + b, no division by the
  standard deviation (running mean at test time).

`norm` picks one of `none`, `weightnorm`, `batchnorm`, `meanonly_bn`,
`weightnorm_meanonly_bn`. As in the authors' code (openai/weightnorm, lasagne/nn.py),
the arms without weight normalization (`none`, `meanonly_bn`) get the same data-dependent
initialisation through a fixed per-unit scale on v; `batchnorm` needs none.

Example::

    net = WeightNormCNN(norm="weightnorm", width=0.25)
    net.data_dependent_init(x_init)     # x_init: a batch of whitened training images
    logits = net(x)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("none", "weightnorm", "batchnorm", "meanonly_bn", "weightnorm_meanonly_bn")


class NormalizedConv(nn.Module):
    """A convolution (1x1 for the paper's NIN and dense layers) with one of `NORMS`,
    followed by a leaky ReLU (slope 0.1) unless `activation=False`."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        padding: int,
        norm: str,
        activation: bool = True,
        init_std: float = 0.05,
    ):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm {norm!r}: choose one of {NORMS}")
        self.norm, self.padding, self.activation = norm, padding, activation
        self.v = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel) * init_std)
        self.b = nn.Parameter(torch.zeros(out_ch))  # BN's shift for `batchnorm`
        if self.weight_normalized:
            self.g = nn.Parameter(torch.ones(out_ch))
        elif norm != "batchnorm":
            # the fixed scale that carries the data-dependent init where there is no g
            self.register_buffer("scale", torch.ones(out_ch))
        if norm == "batchnorm":
            self.bn = nn.BatchNorm2d(out_ch, affine=False)
            self.gamma = nn.Parameter(torch.ones(out_ch))
        if self.mean_only:
            self.register_buffer("running_mean", torch.zeros(out_ch))
        self.initializing = False

    @property
    def weight_normalized(self) -> bool:
        return self.norm in ("weightnorm", "weightnorm_meanonly_bn")

    @property
    def mean_only(self) -> bool:
        return self.norm in ("meanonly_bn", "weightnorm_meanonly_bn")

    def weight(self) -> torch.Tensor:
        if self.weight_normalized:
            norm = self.v.flatten(1).norm(dim=1)
            return self.v * (self.g / norm).view(-1, 1, 1, 1)
        if self.norm == "batchnorm":
            return self.v
        return self.v * self.scale.view(-1, 1, 1, 1)

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """The input to the nonlinearity."""
        t = F.conv2d(x, self.weight(), padding=self.padding)
        if self.initializing:
            return self._init_from(t)
        if self.norm == "batchnorm":
            return self.bn(t) * self.gamma.view(1, -1, 1, 1) + self.b.view(1, -1, 1, 1)
        if self.mean_only:
            if self.training:
                mean = t.mean(dim=(0, 2, 3))
                with torch.no_grad():
                    self.running_mean.lerp_(mean, 0.1)
            else:
                mean = self.running_mean
            t = t - mean.view(1, -1, 1, 1)
        return t + self.b.view(1, -1, 1, 1)

    @torch.no_grad()
    def _init_from(self, t: torch.Tensor) -> torch.Tensor:
        """Section 3: set g (or the fixed scale) and b so that this batch's features are
        zero-mean and unit-variance; return them normalised for the next layer."""
        if self.norm == "batchnorm":
            return self.bn(t) * self.gamma.view(1, -1, 1, 1) + self.b.view(1, -1, 1, 1)
        mean = t.mean(dim=(0, 2, 3))
        std = (t - mean.view(1, -1, 1, 1)).square().mean(dim=(0, 2, 3)).sqrt().clamp_min(1e-8)
        if self.weight_normalized:
            self.g.div_(std)
        else:
            self.scale.div_(std)
        if self.mean_only:
            self.b.zero_()  # the batch mean is subtracted anyway
            self.running_mean.copy_(mean / std)
        else:
            self.b.copy_(-mean / std)
        return (t - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.pre_activation(x)
        return F.leaky_relu(t, 0.1) if self.activation else t


class WeightNormCNN(nn.Module):
    """The paper's CIFAR-10 network (appendix; openai/weightnorm lasagne/train.py):

    Gaussian noise (sigma 0.15) -> 3 x [3x3 conv 96] -> 2x2 max-pool -> dropout 0.5 ->
    3 x [3x3 conv 192] -> 2x2 max-pool -> dropout 0.5 -> 3x3 conv 192 (no padding) ->
    1x1 conv 192 -> 1x1 conv 192 -> global average pool -> dense 10,

    every conv and the dense layer normalised by `norm`, leaky ReLUs (0.1) between.
    `width` scales the channel counts (96, 192).
    """

    def __init__(
        self,
        norm: str = "weightnorm",
        width: float = 1.0,
        num_classes: int = 10,
        input_noise: float = 0.15,
        dropout: float = 0.5,
    ):
        super().__init__()
        c1, c2 = max(1, round(96 * width)), max(1, round(192 * width))
        self.norm, self.input_noise = norm, input_noise

        def layer(i: int, o: int, k: int = 3, p: int = 1, act: bool = True) -> NormalizedConv:
            return NormalizedConv(i, o, k, p, norm, activation=act)

        self.block1 = nn.ModuleList([layer(3, c1), layer(c1, c1), layer(c1, c1)])
        self.block2 = nn.ModuleList([layer(c1, c2), layer(c2, c2), layer(c2, c2)])
        self.block3 = nn.ModuleList([layer(c2, c2, p=0), layer(c2, c2, 1, 0), layer(c2, c2, 1, 0)])
        self.dense = layer(c2, num_classes, 1, 0, act=False)
        self.drop = nn.Dropout(dropout)

    @property
    def layers(self) -> list[NormalizedConv]:
        return [*self.block1, *self.block2, *self.block3, self.dense]

    def forward(self, x: torch.Tensor, collect: list[torch.Tensor] | None = None) -> torch.Tensor:
        if self.training and self.input_noise > 0:
            x = x + self.input_noise * torch.randn_like(x)
        for blocks, pool in ((self.block1, True), (self.block2, True), (self.block3, False)):
            for lay in blocks:
                t = lay.pre_activation(x)
                if collect is not None:
                    collect.append(t)
                x = F.leaky_relu(t, 0.1)
            if pool:
                x = self.drop(F.max_pool2d(x, 2))
        x = x.mean(dim=(2, 3), keepdim=True)
        t = self.dense.pre_activation(x)
        if collect is not None:
            collect.append(t)
        return t.flatten(1)

    @torch.no_grad()
    def pre_activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's input to its nonlinearity (the logits last), in the current mode."""
        out: list[torch.Tensor] = []
        self(x, collect=out)
        return out

    @torch.no_grad()
    def data_dependent_init(self, x: torch.Tensor) -> None:
        """Section 3: one forward pass of `x` that initialises each layer in turn."""
        for lay in self.layers:
            lay.initializing = True
        try:
            self(x)
        finally:
            for lay in self.layers:
                lay.initializing = False
