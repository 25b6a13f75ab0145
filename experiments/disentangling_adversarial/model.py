"""Networks of Mathieu, Zhao, Sprechmann, Ramesh & LeCun, "Disentangling factors of variation
in deep representations using adversarial training" (NIPS 2016, arXiv 1611.03383), for MNIST.

The layer plan follows the authors' released code (github MichaelMathieu/factors-variation,
`model_small.lua`, `model.lua`; read as a reference, not copied): images are zero-padded from
28x28 to 32x32, every conv block is conv -> batch norm -> ReLU, kernels 4x4 (a stride-1
kernel is made odd, 5x5, so the padding is symmetric), `nf` feature planes at the first layer.

- Encoder: block nf (stride 1), blocks 2nf, 4nf, 8nf (stride 2: 32 -> 4), flatten, then two
  linear heads: the specified code s (`s_dim`) and the unspecified code z, given as a mean
  and a log-variance (`z_dim` each): z is a VAE-style Gaussian code (the released code's
  `klweightZ` > 0), s is deterministic.
- Decoder: Linear(z) + Linear(s) -> 8nf x 4 x 4, transposed-conv blocks 4nf, 2nf, nf (stride
  2: 4 -> 32), conv to 1 plane, crop back to 28x28, tanh (pixels in [-1, 1], as the released
  code's normalisation; the task maps the harness's [0, 1] pixels to it).
- Discriminator D(x, class): conv stride 2 (32 -> 16 -> 8 -> 4) with nf, 2nf, 4nf planes,
  each followed by the addition of a learned per-class map (a lookup table of 4x4 maps,
  upsampled to the layer's size), batch norm, leaky ReLU 0.2; then one logit. It answers
  "is this a real image of this class?".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PAD = 2  # 28 -> 32


def conv(c_in: int, c_out: int, k: int, stride: int) -> nn.Conv2d:
    if stride == 1 and k % 2 == 0:
        k += 1  # symmetric padding needs an odd kernel (as the released code)
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=(k - stride + 1) // 2)


def block(c_in: int, c_out: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(conv(c_in, c_out, k, stride), nn.BatchNorm2d(c_out), nn.ReLU())


def up_block(c_in: int, c_out: int, k: int) -> nn.Sequential:
    # stride 2, output twice the input: padding (k - 2) / 2 for even k
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, k, stride=2, padding=(k - 2) // 2),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


class Encoder(nn.Module):
    """Images (n, 784) in [-1, 1] -> (s (n, s_dim), z mean (n, z_dim), z log-variance)."""

    def __init__(self, nf: int, s_dim: int, z_dim: int, k: int = 4):
        super().__init__()
        self.net = nn.Sequential(
            block(1, nf, k, 1),
            block(nf, 2 * nf, k, 2),
            block(2 * nf, 4 * nf, k, 2),
            block(4 * nf, 8 * nf, k, 2),
            nn.Flatten(),
        )
        n = 8 * nf * 4 * 4
        self.s_head = nn.Linear(n, s_dim)
        self.z_head = nn.Linear(n, 2 * z_dim)

    def forward(self, x: torch.Tensor):
        h = self.net(F.pad(x.reshape(-1, 1, 28, 28), (PAD,) * 4))
        mu, logvar = self.z_head(h).chunk(2, dim=1)
        return self.s_head(h), mu, logvar


class Decoder(nn.Module):
    """(s, z) -> images (n, 784) in [-1, 1]."""

    def __init__(self, nf: int, s_dim: int, z_dim: int, k: int = 4):
        super().__init__()
        self.nf = nf
        self.from_s = nn.Linear(s_dim, 8 * nf * 16)
        self.from_z = nn.Linear(z_dim, 8 * nf * 16)
        self.net = nn.Sequential(
            up_block(8 * nf, 4 * nf, k),
            up_block(4 * nf, 2 * nf, k),
            up_block(2 * nf, nf, k),
            conv(nf, 1, k, 1),
        )

    def forward(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = (self.from_s(s) + self.from_z(z)).reshape(-1, 8 * self.nf, 4, 4)
        x = self.net(h)[:, :, PAD:-PAD, PAD:-PAD]
        return torch.tanh(x).reshape(len(s), 784)


class Discriminator(nn.Module):
    """(images (n, 784) in [-1, 1], classes (n,)) -> logits (n,): real image of that class?"""

    def __init__(self, nf: int, n_classes: int = 10, k: int = 4, leak: float = 0.2):
        super().__init__()
        widths = [nf, 2 * nf, 4 * nf]
        self.convs = nn.ModuleList([conv(c_in, c, k, 2) for c_in, c in zip([1, *widths], widths)])
        self.luts = nn.ModuleList([nn.Embedding(n_classes, c * 16) for c in widths])
        self.norms = nn.ModuleList([nn.BatchNorm2d(c) for c in widths])
        self.out = nn.Linear(4 * nf * 16, 1)
        self.widths, self.leak = widths, leak

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.pad(x.reshape(-1, 1, 28, 28), (PAD,) * 4)
        for conv_, lut, norm, c in zip(self.convs, self.luts, self.norms, self.widths):
            h = conv_(h)
            cls = lut(y).reshape(-1, c, 4, 4)
            h = h + F.interpolate(cls, size=h.shape[-2:], mode="nearest")
            h = F.leaky_relu(norm(h), self.leak)
        return self.out(h.flatten(1)).reshape(len(x))


class DisentanglingAE(nn.Module):
    """`encoder`, `decoder` (the generative model, trained together) and `discriminator`."""

    def __init__(self, nf: int = 16, s_dim: int = 64, z_dim: int = 512, n_classes: int = 10):
        super().__init__()
        self.s_dim, self.z_dim, self.n_classes = s_dim, z_dim, n_classes
        self.encoder = Encoder(nf, s_dim, z_dim)
        self.decoder = Decoder(nf, s_dim, z_dim)
        self.discriminator = Discriminator(nf, n_classes)
