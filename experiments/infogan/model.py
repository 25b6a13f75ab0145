"""Networks of Chen et al., "InfoGAN: Interpretable Representation Learning by Information
Maximizing Generative Adversarial Nets" (NIPS 2016, arXiv 1606.03657), for MNIST (their
appendix C.1 and the official code, openai/InfoGAN `regularized_gan.py`; layer list in
shared/docs/paper-numbers-wave2.md section 3 [P]):

- G: FC 1024, BN, ReLU; FC 7x7x128, BN, ReLU; deconv 64 4x4 stride 2, BN, ReLU;
  deconv 1 4x4 stride 2, sigmoid (pixels in [0, 1], as the harness's MNIST);
- D/Q trunk: conv 64 4x4 stride 2, lReLU; conv 128 4x4 stride 2, BN, lReLU; FC 1024, BN, lReLU;
- D head: FC 1 (a logit); Q head: FC 128, BN, lReLU, FC to the code parameters (10 logits of
  the categorical code, the means of the 2 continuous codes; their std is fixed at 1 as in
  the official code's `Uniform(1, fix_std=True)`).

The latent input is 62 noise variables, a one-hot 10-way code and 2 continuous codes: 74 in
all. `widths` scale the layer widths (the quick tier's smaller networks); the leak is the
paper's 0.1 (the official code uses 0.01).
"""

from __future__ import annotations

import torch
from torch import nn


class Generator(nn.Module):
    def __init__(self, in_dim: int, fc: int = 1024, ch: int = 128, ch2: int = 64):
        super().__init__()
        self.ch = ch
        self.net = nn.Sequential(
            nn.Linear(in_dim, fc),
            nn.BatchNorm1d(fc),
            nn.ReLU(),
            nn.Linear(fc, 7 * 7 * ch),
            nn.BatchNorm1d(7 * 7 * ch),
            nn.ReLU(),
            nn.Unflatten(1, (ch, 7, 7)),
            nn.ConvTranspose2d(ch, ch2, 4, stride=2, padding=1),  # 14x14
            nn.BatchNorm2d(ch2),
            nn.ReLU(),
            nn.ConvTranspose2d(ch2, 1, 4, stride=2, padding=1),  # 28x28
            nn.Sigmoid(),
        )

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.net(latent).reshape(len(latent), 784)  # flat, as the MNIST datamodule


class Trunk(nn.Module):
    """The layers D and Q share: flat 784-pixel images -> `fc` features."""

    def __init__(self, ch: int = 64, ch2: int = 128, fc: int = 1024, leak: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Unflatten(1, (1, 28, 28)),
            nn.Conv2d(1, ch, 4, stride=2, padding=1),  # 14x14
            nn.LeakyReLU(leak),
            nn.Conv2d(ch, ch2, 4, stride=2, padding=1),  # 7x7
            nn.BatchNorm2d(ch2),
            nn.LeakyReLU(leak),
            nn.Flatten(),
            nn.Linear(ch2 * 7 * 7, fc),
            nn.BatchNorm1d(fc),
            nn.LeakyReLU(leak),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Critic(nn.Module):
    """D: trunk then one logit; `trunk` is shared with Q."""

    def __init__(self, trunk: Trunk, fc: int):
        super().__init__()
        self.trunk, self.head = trunk, nn.Linear(fc, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x)).reshape(len(x))


class QHead(nn.Module):
    """Q(c | x) from trunk features: (categorical logits (n, n_cat), continuous means (n, n_cont))."""

    def __init__(self, fc: int, hidden: int, n_cat: int, n_cont: int, leak: float = 0.1):
        super().__init__()
        self.n_cat = n_cat
        self.net = nn.Sequential(
            nn.Linear(fc, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(leak),
            nn.Linear(hidden, n_cat + n_cont),
        )  # fmt: skip

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(h)
        return out[:, : self.n_cat], out[:, self.n_cat :]


class InfoGAN(nn.Module):
    """`generator` (latent (n, z_dim) -> flat images), `critic` (D, trunk included) and `q`
    (the Q head on the critic's trunk). `z_dim` is the whole latent width: noise + one-hot
    categorical code + continuous codes, in that order."""

    def __init__(
        self,
        n_noise: int = 62,
        n_cat: int = 10,
        n_cont: int = 2,
        g_fc: int = 1024,
        g_ch: int = 128,
        g_ch2: int = 64,
        d_ch: int = 64,
        d_ch2: int = 128,
        d_fc: int = 1024,
        q_hidden: int = 128,
        leak: float = 0.1,
    ):
        super().__init__()
        self.n_noise, self.n_cat, self.n_cont = n_noise, n_cat, n_cont
        self.z_dim = n_noise + n_cat + n_cont
        self.generator = Generator(self.z_dim, g_fc, g_ch, g_ch2)
        self.critic = Critic(Trunk(d_ch, d_ch2, d_fc, leak), d_fc)
        self.q = QHead(d_fc, q_hidden, n_cat, n_cont, leak)

    def recognise(self, x: torch.Tensor, detach_trunk: bool = False):
        h = self.critic.trunk(x)
        return self.q(h.detach() if detach_trunk else h)
