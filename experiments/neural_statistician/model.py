"""The neural statistician (Edwards & Storkey, "Towards a Neural Statistician", ICLR 2017,
arXiv 1606.02185): a variational autoencoder over datasets.

Generative model of a dataset D = (x_1..x_N) with a context c shared by the set and a latent
z_i per example (summary: seed 002 line 9):

    p(D, z, c) = p(c) prod_i p(z_i | c) p(x_i | z_i, c)
    q(z, c | D) = q(c | D) prod_i q(z_i | x_i, c)

- Shared encoder: x -> h (convolutions with batch norm and ELU; three stages, each ending in
  a stride-2 convolution, 28 -> 14 -> 7 -> 4).
- Statistic network q(c|D): a per-example layer h -> e ("pre-pool"), the MEAN of e over the
  set (the only place examples meet: permutation invariant by construction), then "post-pool"
  layers to the mean and log-variance of a diagonal Gaussian over c.
- Inference network q(z|x, c), latent decoder p(z|c) (diagonal Gaussians) and observation
  decoder p(x|z, c) (transposed convolutions, Bernoulli pixels). One stochastic layer of z
  (the summary's L layers with L = 1, as the public re-implementations use for Omniglot).

Few-shot classification (summary): each class's support set D_k is its own dataset; a query
x' goes to the class k with the smallest KL(q(c|x') || q(c|D_k)) (`kl_classify`).

    >>> net = NeuralStatistician(channels=(8, 8, 8), depth=1, hidden=32, c_dim=8, z_dim=4)
    >>> x = torch.rand(3, 5, 1, 28, 28)            # 3 datasets of 5 drawings
    >>> out = net(x); out["loss"].shape, out["c_mean"].shape
    (torch.Size([]), torch.Size([3, 8]))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def gaussian_kl(
    mean_q: torch.Tensor, logvar_q: torch.Tensor, mean_p: torch.Tensor, logvar_p: torch.Tensor
) -> torch.Tensor:
    """KL(N(mean_q, exp logvar_q) || N(mean_p, exp logvar_p)) for diagonal Gaussians, summed
    over the last axis (broadcasting over the others)."""
    return 0.5 * (
        logvar_p - logvar_q + (logvar_q.exp() + (mean_q - mean_p).pow(2)) / logvar_p.exp() - 1.0
    ).sum(-1)


def kl_classify(
    query_mean: torch.Tensor,
    query_logvar: torch.Tensor,
    class_mean: torch.Tensor,
    class_logvar: torch.Tensor,
) -> torch.Tensor:
    """Labels by the smallest KL(q(c|x') || q(c|D_k)).

    query_*: [E, Q, C] posteriors of single queries; class_*: [E, K, C] posteriors of the K
    support sets. Returns [E, Q] class indices (0..K-1).
    """
    kl = gaussian_kl(
        query_mean[:, :, None], query_logvar[:, :, None], class_mean[:, None], class_logvar[:, None]
    )  # [E, Q, K]
    return kl.argmin(-1)


class ConvEncoder(nn.Module):
    """[N, 1, 28, 28] -> [N, channels[-1] * 4 * 4]: per stage `depth` 3x3 convolutions with
    batch norm and ELU, the last of them with stride 2."""

    def __init__(self, channels: Sequence[int], depth: int):
        super().__init__()
        layers, prev = [], 1
        for ch in channels:
            for i in range(depth):
                stride = 2 if i == depth - 1 else 1
                layers += [nn.Conv2d(prev, ch, 3, stride, 1), nn.BatchNorm2d(ch), nn.ELU()]
                prev = ch
        self.net = nn.Sequential(*layers)
        side = 28
        for _ in channels:
            side = (side + 1) // 2
        self.out_dim = prev * side * side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


def mlp(dims: Sequence[int]) -> nn.Sequential:
    """Linear + ELU layers over `dims` (no activation after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims, dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ELU())
    return nn.Sequential(*layers)


class ConvDecoder(nn.Module):
    """[N, hidden] -> [N, 1, 28, 28] Bernoulli logits: a linear map to channels[-1] x 4 x 4,
    then per stage (deepest first) `depth - 1` 3x3 convolutions and one stride-2 transposed
    convolution (4 -> 7 -> 14 -> 28), batch norm and ELU; a 1x1 convolution to the logits."""

    def __init__(self, hidden: int, channels: Sequence[int], depth: int):
        super().__init__()
        chans = list(channels)[::-1]
        self.top = chans[0]
        self.fc = nn.Linear(hidden, self.top * 16)
        layers, prev = [], self.top
        for s, ch in enumerate(chans):
            for _ in range(depth - 1):
                layers += [nn.Conv2d(prev, ch, 3, 1, 1), nn.BatchNorm2d(ch), nn.ELU()]
                prev = ch
            # 4 -> 7 (output_padding 0), 7 -> 14 and 14 -> 28 (output_padding 1)
            pad = 0 if s == 0 else 1
            layers += [
                nn.ConvTranspose2d(prev, ch, 3, 2, 1, output_padding=pad),
                nn.BatchNorm2d(ch),
                nn.ELU(),
            ]
            prev = ch
        layers.append(nn.Conv2d(prev, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.net(F.elu(self.fc(e)).view(-1, self.top, 4, 4))


class NeuralStatistician(nn.Module):
    """The statistic network over sets of drawings, with a VAE over each set (see module doc).

    channels/depth: the shared encoder (and, mirrored, the decoder); hidden: width of the
    fully connected layers; layers: hidden layers of the inference network and the latent
    decoder; c_dim / z_dim: the context and the per-example latent.
    """

    def __init__(
        self,
        channels: Sequence[int] = (64, 128, 256),
        depth: int = 3,
        hidden: int = 256,
        layers: int = 3,
        c_dim: int = 512,
        z_dim: int = 16,
    ):
        super().__init__()
        self.c_dim, self.z_dim = c_dim, z_dim
        self.encoder = ConvEncoder(channels, depth)
        h = self.encoder.out_dim
        # statistic network: pre-pool (per example), mean pool, post-pool
        self.prepool = nn.Sequential(nn.Linear(h, hidden), nn.BatchNorm1d(hidden), nn.ELU())
        self.postpool = nn.Sequential(
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ELU(),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ELU(),
            nn.Linear(hidden, 2 * c_dim),
        )  # fmt: skip
        # q(z | x, c): h and c embedded, summed, then the hidden layers
        self.q_h, self.q_c = nn.Linear(h, hidden), nn.Linear(c_dim, hidden)
        self.q_z = mlp([hidden] * (layers + 1) + [2 * z_dim])
        # p(z | c)
        self.p_z = mlp([c_dim] + [hidden] * layers + [2 * z_dim])
        # p(x | z, c)
        self.x_z, self.x_c = nn.Linear(z_dim, hidden), nn.Linear(c_dim, hidden)
        self.decoder = ConvDecoder(hidden, channels, depth)

    # --- the statistic network ------------------------------------------------------------
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Per-example statistic features e (before pooling): [N, 1, 28, 28] -> [N, hidden]."""
        return self.prepool(self.encoder(x))

    def context(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(c|D) from per-example features e [..., n, hidden]: mean over the set (axis -2),
        then the post-pool layers. Returns (mean, logvar), each [..., c_dim]."""
        pooled = e.mean(-2)
        lead = pooled.shape[:-1]
        out = self.postpool(pooled.reshape(-1, pooled.shape[-1]))
        mean, logvar = out.reshape(*lead, -1).chunk(2, -1)
        return mean, logvar

    def context_of(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(c|D) for datasets x [B, n, 1, 28, 28]."""
        b, n = x.shape[:2]
        return self.context(self.embed(x.flatten(0, 1)).view(b, n, -1))

    # --- the variational lower bound --------------------------------------------------------
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: [B, n, 1, 28, 28] in [0, 1] (B datasets of n drawings). Returns the loss (minus
        the lower bound, in nats per drawing) and its parts."""
        b, n = x.shape[:2]
        flat = x.flatten(0, 1)
        h = self.encoder(flat)
        c_mean, c_logvar = self.context(self.prepool(h).view(b, n, -1))
        c = c_mean + torch.randn_like(c_mean) * (0.5 * c_logvar).exp()
        c_each = c.repeat_interleave(n, 0)  # [B * n, c_dim]
        qz_mean, qz_logvar = self.q_z(F.elu(self.q_h(h) + self.q_c(c_each))).chunk(2, -1)
        z = qz_mean + torch.randn_like(qz_mean) * (0.5 * qz_logvar).exp()
        pz_mean, pz_logvar = self.p_z(c_each).chunk(2, -1)
        logits = self.decoder(self.x_z(z) + self.x_c(c_each))
        recon = F.binary_cross_entropy_with_logits(logits, flat, reduction="sum") / (b * n)
        kl_z = gaussian_kl(qz_mean, qz_logvar, pz_mean, pz_logvar).sum() / (b * n)
        zeros = torch.zeros_like(c_mean)
        kl_c = gaussian_kl(c_mean, c_logvar, zeros, zeros).sum() / (b * n)
        return {
            "loss": recon + kl_z + kl_c,
            "recon": recon,
            "kl_z": kl_z,
            "kl_c": kl_c,
            "c_mean": c_mean,
            "c_logvar": c_logvar,
        }
