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

Minibatch discrimination (section 3.2; `MinibatchDiscrimination`, off unless
`minibatch_kernels > 0`): the official `nn.MinibatchLayer` (in the MNIST script of the time,
`train_mnist_minibatch.py`, named `MMDLayer`) between D's last hidden layer and its output
layer (o(x) from that layer's features before its Gaussian noise, the output layer reading
the noisy features and o(x)): 100 kernels of 5 dimensions, theta ~ N(0, 0.1^2) (the MNIST version; 0.05 in the
later CIFAR/SVHN one), weight-normalised with a trainable log scale, bias -1, both reset by the
data-dependent initialisation.

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


class MinibatchDiscrimination(nn.Module):
    """Minibatch discrimination, Salimans et al. (2016) section 3.2.

    The features f(x_i) in R^A of each example in the batch are multiplied by a tensor
    T in R^{A x B x C} into M_i in R^{B x C}; for each of the B kernels the closeness of two
    examples is c_b(x_i, x_j) = exp(-||M_{i,b} - M_{j,b}||_L1), and o(x_i)_b =
    sum_{j != i} c_b(x_i, x_j) + bias_b. The output is [f(x_i), o(x_i)] (A + B wide), what the
    next layer reads.

    As the official `nn.MinibatchLayer`: the sum leaves out j = i (the official adds 1e6 to the
    diagonal of the distances, so exp(-d_ii) = 0; the paper's formula sums over all j, which
    only adds 1 to every o(x_i)_b); T = theta * exp(log_scale) / ||theta|| (the norm over the A
    inputs, per (b, c)); `forward(..., init=True)` rescales each kernel so that the mean
    over the batch of each example's smallest distance to another example is 2, and sets the
    bias to minus the batch mean of o, so o starts centred.
    """

    def __init__(self, n_in: int, kernels: int = 100, kernel_dim: int = 5, init_std: float = 0.1):
        super().__init__()
        self.kernels, self.kernel_dim = int(kernels), int(kernel_dim)
        self.theta = nn.Parameter(torch.randn(n_in, self.kernels, self.kernel_dim) * init_std)
        self.log_scale = nn.Parameter(torch.zeros(self.kernels, self.kernel_dim))
        self.b = nn.Parameter(torch.full((self.kernels,), -1.0))

    def tensor(self) -> torch.Tensor:
        """T in R^{A x B x C}."""
        return self.theta * (self.log_scale.exp() / self.theta.pow(2).sum(0).sqrt())

    def distances(self, f: torch.Tensor) -> torch.Tensor:
        """(n, B, n): ||M_{i,b} - M_{j,b}||_L1, with the diagonal (j = i) made huge."""
        m = torch.einsum("na,abc->bnc", f, self.tensor())  # M, kernel-major: (B, n, C)
        # L1 distances kernel by kernel: (B, n, n) memory, not the (n, B, C, n) of a broadcast
        d = torch.cdist(m, m, p=1).permute(1, 0, 2)  # (i, b, j)
        eye = torch.eye(len(f), dtype=f.dtype, device=f.device)
        return d + 1e6 * eye.unsqueeze(1)

    def forward(self, f: torch.Tensor, init: bool = False) -> torch.Tensor:
        return torch.cat([f, self.closeness(f, init=init)], 1)

    def closeness(self, f: torch.Tensor, init: bool = False) -> torch.Tensor:
        """o(x_i) in R^B, bias included."""
        d = self.distances(f)
        if init:
            with torch.no_grad():
                half_min = 0.5 * d.min(2).values.mean(0)  # per kernel
                d = d / half_min.view(1, -1, 1)
                self.log_scale.sub_(half_min.log().unsqueeze(1))
        o = torch.exp(-d).sum(2)
        if init:
            with torch.no_grad():
                mean = o.mean(0)
                o = o - mean
                self.b.copy_(-mean)
        else:
            o = o + self.b
        return o


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
        minibatch_kernels: int = 0,
        minibatch_kernel_dim: int = 5,
        minibatch_init_std: float = 0.1,
    ):
        super().__init__()
        sizes = [n_in, *hidden]
        self.hidden = nn.ModuleList(WNDense(a, b) for a, b in zip(sizes, sizes[1:]))
        # minibatch discrimination between the last hidden layer and the output layer, where
        # the official script puts it (after the last feature layer)
        self.minibatch = (
            MinibatchDiscrimination(
                sizes[-1], minibatch_kernels, minibatch_kernel_dim, minibatch_init_std
            )
            if minibatch_kernels > 0
            else None
        )
        n_out_in = sizes[-1] + max(int(minibatch_kernels), 0)
        self.out = WNDense(n_out_in, n_classes, relu=False, train_scale=True)
        self.input_noise, self.hidden_noise = float(input_noise), float(hidden_noise)

    def _noise(self, h: torch.Tensor, std: float) -> torch.Tensor:
        return h + torch.randn_like(h) * std if self.training and std > 0 else h

    def forward(self, x: torch.Tensor, init: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        h = self._noise(x, self.input_noise)
        features = h
        for layer in self.hidden:
            features = layer(h, init=init)
            h = self._noise(features, self.hidden_noise)
        if self.minibatch is not None:
            # o(x) from the last hidden layer's features before their Gaussian noise: in the
            # official D no noise stands right before the minibatch layer, and noise of
            # std 0.5 on its input would make identical samples look different
            h = torch.cat([h, self.minibatch.closeness(features, init=init)], 1)
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
        minibatch_kernels: int = 0,
        minibatch_kernel_dim: int = 5,
        minibatch_init_std: float = 0.1,
    ):
        super().__init__()
        self.z_dim, self.n_classes = int(z_dim), int(n_classes)
        self.generator = Generator(z_dim, g_hidden)
        self.critic = Discriminator(
            tuple(d_hidden),
            n_classes,
            784,
            input_noise,
            hidden_noise,
            minibatch_kernels,
            minibatch_kernel_dim,
            minibatch_init_std,
        )
