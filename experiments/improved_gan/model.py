"""Networks of Salimans, Goodfellow, Zaremba, Cheung, Radford & Chen, "Improved Techniques
for Training GANs" (NIPS 2016, arXiv 1606.03498), for semi-supervised permutation-invariant
MNIST, as in the official code (openai/improved-gan `train_mnist_feature_matching.py` and
`nn.py`; shared/docs/paper-numbers-wave2.md section 4 [P]):

- D/classifier: Gaussian noise (std 0.3) on the pixels; dense 1000, 500, 250, 250, 250 with
  ReLU, each followed by Gaussian noise (std 0.5); dense 10 (the logits of the K = 10 real
  classes; the generated class has its logit fixed at 0). Every dense layer is the official
  `nn.DenseLayer`: W = theta * scale / ||theta|| per output unit (weight normalisation),
  theta ~ N(0, 0.1^2), the scale fixed (a buffer) except in the output layer
  (`train_scale=True`), scale and bias set by a data-dependent initialisation
  (`Discriminator.forward(..., init=True)`: each layer's pre-activations standardised on an
  initial batch).
- G: uniform noise U(0, 1)^100; dense 500 (no bias), batch norm with a bias and no scale
  (`nn.batch_norm(..., g=None)`), softplus; the same again; dense 784 with a trainable
  per-unit weight-norm scale (`nn.l2normalize`), bias, sigmoid (pixels in [0, 1]). Lasagne's
  default Glorot-uniform weights.

Noise in D is drawn from torch's global generator, which the harness checkpoints, so a
resumed run draws the same noise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WNDense(nn.Module):
    """The official `nn.DenseLayer`: weight-normalised dense layer with a data-dependent init."""

    def __init__(self, n_in: int, n_out: int, relu: bool = True, train_scale: bool = False):
        super().__init__()
        self.relu = relu
        self.theta = nn.Parameter(torch.randn(n_in, n_out) * 0.1)
        scale = torch.ones(n_out)
        if train_scale:
            self.scale = nn.Parameter(scale)
        else:
            self.register_buffer("scale", scale)
        self.b = nn.Parameter(torch.zeros(n_out))

    def weight(self) -> torch.Tensor:
        return self.theta * (self.scale / self.theta.pow(2).sum(0).sqrt())

    def forward(self, x: torch.Tensor, init: bool = False) -> torch.Tensor:
        a = x @ self.weight()
        if init:
            # standardise each unit's pre-activation on this batch and fold that into the
            # scale and bias (official: scale <- scale / std, b <- -mean / std)
            with torch.no_grad():
                m = a.mean(0)
                a = a - m
                std = a.pow(2).mean(0).sqrt()
                a = a / std
                self.scale.div_(std)
                self.b.copy_(-m / std)
        else:
            a = a + self.b
        return F.relu(a) if self.relu else a


class Discriminator(nn.Module):
    """K-class classifier whose logits also make the real/fake discriminator (K+1 classes,
    the generated class's logit fixed at 0). `forward` returns (logits, features of the last
    hidden layer), the features being what G's feature matching compares."""

    def __init__(
        self,
        hidden: tuple[int, ...] = (1000, 500, 250, 250, 250),
        n_classes: int = 10,
        n_in: int = 784,
        input_noise: float = 0.3,
        hidden_noise: float = 0.5,
    ):
        super().__init__()
        sizes = [n_in, *hidden]
        self.hidden = nn.ModuleList(WNDense(a, b) for a, b in zip(sizes, sizes[1:]))
        self.out = WNDense(sizes[-1], n_classes, relu=False, train_scale=True)
        self.input_noise, self.hidden_noise = float(input_noise), float(hidden_noise)

    def _noise(self, h: torch.Tensor, std: float) -> torch.Tensor:
        return h + torch.randn_like(h) * std if self.training and std > 0 else h

    def forward(self, x: torch.Tensor, init: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        h = self._noise(x, self.input_noise)
        features = h
        for layer in self.hidden:
            features = layer(h, init=init)
            h = self._noise(features, self.hidden_noise)
        return self.out(h, init=init), features


class Generator(nn.Module):
    def __init__(self, z_dim: int = 100, hidden: int = 500, n_out: int = 784):
        super().__init__()
        self.fc1 = nn.Linear(z_dim, hidden, bias=False)
        self.bn1 = nn.BatchNorm1d(hidden, eps=1e-6, affine=False)
        self.b1 = nn.Parameter(torch.zeros(hidden))
        self.fc2 = nn.Linear(hidden, hidden, bias=False)
        self.bn2 = nn.BatchNorm1d(hidden, eps=1e-6, affine=False)
        self.b2 = nn.Parameter(torch.zeros(hidden))
        self.theta = nn.Parameter(torch.empty(hidden, n_out))
        self.scale = nn.Parameter(torch.ones(n_out))
        self.b3 = nn.Parameter(torch.zeros(n_out))
        for w in (self.fc1.weight, self.fc2.weight, self.theta):
            nn.init.xavier_uniform_(w)  # Lasagne's GlorotUniform default

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.softplus(self.bn1(self.fc1(z)) + self.b1)
        h = F.softplus(self.bn2(self.fc2(h)) + self.b2)
        w = self.theta * (self.scale / (1e-6 + self.theta.pow(2).sum(0)).sqrt())
        return torch.sigmoid(h @ w + self.b3)


class ImprovedGAN(nn.Module):
    """`generator`, `critic` (the K-class discriminator/classifier) and `z_dim`, as
    `shortsci_bench.tasks.gan.GANTask` expects."""

    def __init__(
        self,
        z_dim: int = 100,
        g_hidden: int = 500,
        d_hidden: tuple[int, ...] = (1000, 500, 250, 250, 250),
        n_classes: int = 10,
        input_noise: float = 0.3,
        hidden_noise: float = 0.5,
    ):
        super().__init__()
        self.z_dim, self.n_classes = int(z_dim), int(n_classes)
        self.generator = Generator(z_dim, g_hidden)
        self.critic = Discriminator(tuple(d_hidden), n_classes, 784, input_noise, hidden_noise)
