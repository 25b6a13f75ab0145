"""Feature extractors for nonlinear ICA, after Hyvärinen & Morioka, "Unsupervised Feature
Extraction by Time-Contrastive Learning and Nonlinear ICA" (NIPS 2016, arXiv 1605.06336).

- `TCLNet`: an MLP h(x) (maxout hidden layers, a last layer of n units with absolute
  value: the log-density of a Laplace source is -|s|/scale) and a multinomial logistic
  regression on h that predicts the segment index. After training, linear ICA on h(x)
  estimates |s_i| up to point-wise transformations.
- `DenoisingAutoencoder` (a baseline of the paper): an MLP encoder to an n-unit code and a
  decoder back, trained to reconstruct clean x from x plus Gaussian noise; linear ICA runs
  on the code.
- `NoFeatures`: the identity, for plain linear ICA on the observations.
"""

from __future__ import annotations

import torch
from torch import nn


class Maxout(nn.Module):
    """A linear map to k * width units, then the max over each group of k."""

    def __init__(self, d_in: int, width: int, k: int = 2):
        super().__init__()
        self.k, self.linear = k, nn.Linear(d_in, width * k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        return y.view(*y.shape[:-1], -1, self.k).amax(-1)


def hidden_widths(n_comp: int, depth: int, width_factor: int) -> list[int]:
    """`depth` layers in all (as many as the mixing MLP has, as in the paper's simulation):
    depth - 1 hidden maxout layers of width_factor * n_comp units, then the n_comp outputs."""
    return [int(width_factor) * int(n_comp)] * (int(depth) - 1)


class TCLNet(nn.Module):
    """h(x): depth - 1 maxout layers, then Linear(n_comp) and |.|; logits = MLR(h)."""

    trainable = True

    def __init__(
        self, n_comp: int, n_segments: int, depth: int, width_factor: int = 2, maxout_k: int = 2
    ):
        super().__init__()
        layers, d = [], n_comp
        for width in hidden_widths(n_comp, depth, width_factor):
            layers.append(Maxout(d, int(width), maxout_k))
            d = int(width)
        self.hidden = nn.Sequential(*layers)
        self.last = nn.Linear(d, n_comp)
        self.mlr = nn.Linear(n_comp, n_segments)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.hidden(x)).abs()

    def loss(self, x: torch.Tensor, labels: torch.Tensor, generator=None) -> torch.Tensor:
        return nn.functional.cross_entropy(self.mlr(self.features(x)), labels)

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, labels: torch.Tensor) -> float:
        return float((self.mlr(self.features(x)).argmax(-1) == labels).double().mean())


class DenoisingAutoencoder(nn.Module):
    """Encoder: depth - 1 maxout layers then Linear(n_comp); the decoder mirrors it."""

    trainable = True

    def __init__(
        self, n_comp: int, depth: int, width_factor: int = 2, noise: float = 0.5, maxout_k: int = 2
    ):
        super().__init__()
        self.noise = float(noise)
        hidden = hidden_widths(n_comp, depth, width_factor)
        enc, d = [], n_comp
        for width in hidden:
            enc.append(Maxout(d, int(width), maxout_k))
            d = int(width)
        enc.append(nn.Linear(d, n_comp))
        dec, d = [], n_comp
        for width in reversed(hidden):
            dec.append(Maxout(d, int(width), maxout_k))
            d = int(width)
        dec.append(nn.Linear(d, n_comp))
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def loss(self, x: torch.Tensor, labels: torch.Tensor, generator=None) -> torch.Tensor:
        noisy = x + self.noise * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return ((self.decoder(self.encoder(noisy)) - x) ** 2).sum(-1).mean()


class NoFeatures(nn.Module):
    """Plain linear ICA on the observations: the features are x itself."""

    trainable = False

    def __init__(self, **unused):
        super().__init__()  # takes (and ignores) the other models' settings

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x
