"""Real NVP, from Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, ICLR 2017,
arXiv 1605.08803), sections 3-4.

A bijection f from data to a standard normal latent, built from affine coupling layers
(section 3.3): y = b*x + (1-b)*(x*exp(s(b*x)) + t(b*x)), whose Jacobian is triangular with
log-determinant sum((1-b)*s). Masks b are spatial checkerboards or channel halves (3.4).
The multi-scale architecture (3.6) alternates, per scale, 3 checkerboard couplings, a
squeeze (C, H, W) -> (4C, H/2, W/2), 3 channel couplings, and factors out half of the
channels as latents; the last scale has 4 checkerboard couplings. So the log-likelihood
is exact, log p(x) = log N(f(x)) + log |det df/dx|, and sampling is exact, x = f^-1(z).

Data: 8-bit pixels x are dequantized, y = (x + u) / 256 with u ~ U[0, 1), mapped to
logit space by p = a + (1 - 2a) y, l = logit(p) (section 4.1, alpha = 0.05), and the
discrete NLL is bounded by -log p(y) + D log 256 nats (shortsci_bench.tasks.likelihood).

Our simplifications: no batch normalisation and no weight normalisation in the s and t
networks (the paper uses both); s = scale * tanh(raw s), a learned scale per channel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from shortsci_bench.tasks.likelihood import dequantized_nll

LOG_2PI = math.log(2 * math.pi)


def checkerboard(h: int, w: int, parity: int, device=None) -> torch.Tensor:
    """(1, 1, H, W) mask: 1 where (i + j) % 2 == parity."""
    i, j = torch.meshgrid(
        torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
    )
    return (((i + j) % 2) == parity).float().view(1, 1, h, w)


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 4C, H/2, W/2): each 2x2 block becomes 4 channels."""
    n, c, h, w = x.shape
    x = x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, c * 4, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    x = x.view(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // 4, h * 2, w * 2)


class ResNet(nn.Module):
    """The s and t network: 3x3 conv in -> F, `blocks` residual blocks (ReLU, conv, ReLU,
    conv), ReLU, 3x3 conv F -> 2 x out (s and t). The last layer starts at zero, so each
    coupling starts as the identity."""

    def __init__(self, in_ch: int, out_ch: int, features: int, blocks: int):
        super().__init__()
        self.inp = nn.Conv2d(in_ch, features, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.ReLU(),
                nn.Conv2d(features, features, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(features, features, 3, padding=1),
            )  # fmt: skip
            for _ in range(blocks)
        )
        self.out = nn.Conv2d(features, 2 * out_ch, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.inp(x)
        for block in self.blocks:
            y = y + block(y)
        s, t = self.out(F.relu(y)).chunk(2, dim=1)
        return s, t


class AffineCoupling(nn.Module):
    """One affine coupling. `kind="checkerboard"`: transform the sites where the mask is 0,
    conditioned on the others (the mask is an extra input channel); `kind="channel"`:
    transform one half of the channels conditioned on the other (`parity` picks which)."""

    def __init__(self, channels: int, kind: str, parity: int, features: int, blocks: int):
        super().__init__()
        self.kind, self.parity = kind, parity
        if kind == "checkerboard":
            self.net = ResNet(channels + 1, channels, features, blocks)
            out = channels
        elif kind == "channel":
            half = channels // 2
            self.net = ResNet(half, channels - half, features, blocks)
            out = channels - half
        else:
            raise ValueError(f"coupling kind {kind!r}: checkerboard or channel")
        self.scale = nn.Parameter(torch.ones(1, out, 1, 1))

    def _st(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.net(cond)
        return self.scale * torch.tanh(s), t

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half = x.shape[1] // 2
        a, b = x[:, :half], x[:, half:]
        return (a, b) if self.parity == 0 else (b, a)  # (conditioner, transformed)

    def _join(self, cond: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
        return torch.cat([cond, moved] if self.parity == 0 else [moved, cond], dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x -> (y, log|det dy/dx| per example)."""
        if self.kind == "checkerboard":
            b = checkerboard(x.shape[2], x.shape[3], self.parity, x.device).to(x.dtype)
            s, t = self._st(torch.cat([x * b, b.expand(len(x), 1, -1, -1)], dim=1))
            s, t = s * (1 - b), t * (1 - b)
            return x * torch.exp(s) + t, s.flatten(1).sum(1)
        cond, moved = self._split(x)
        s, t = self._st(cond)
        return self._join(cond, moved * torch.exp(s) + t), s.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "checkerboard":
            b = checkerboard(y.shape[2], y.shape[3], self.parity, y.device).to(y.dtype)
            s, t = self._st(torch.cat([y * b, b.expand(len(y), 1, -1, -1)], dim=1))
            s, t = s * (1 - b), t * (1 - b)
            return (y - t) * torch.exp(-s)
        cond, moved = self._split(y)
        s, t = self._st(cond)
        return self._join(cond, (moved - t) * torch.exp(-s))


class RealNVP(nn.Module):
    """The multi-scale flow on (C, H, W) images of 8-bit values. `scales`: how many; each but
    the last halves the resolution once and factors out half the channels. `nll(x)` is the
    discrete NLL bound in nats per image (dequantized with fresh noise each call)."""

    def __init__(self, shape: tuple[int, int, int] = (1, 28, 28), scales: int = 2,
                 features: int = 64, blocks: int = 8, alpha: float = 0.05):  # fmt: skip
        super().__init__()
        self.shape, self.alpha = tuple(shape), float(alpha)
        c, h, w = self.shape
        self.levels = nn.ModuleList()
        for k in range(scales):
            if k == scales - 1:
                layers = [
                    AffineCoupling(c, "checkerboard", i % 2, features, blocks) for i in range(4)
                ]
                self.levels.append(nn.ModuleList(layers))
                break
            if h % 2 or w % 2:
                raise ValueError(f"scale {k}: {h}x{w} cannot be squeezed; use fewer scales")
            layers = [AffineCoupling(c, "checkerboard", i % 2, features, blocks) for i in range(3)]
            layers += [AffineCoupling(4 * c, "channel", i % 2, features, blocks) for i in range(3)]
            self.levels.append(nn.ModuleList(layers))
            c, h, w = 2 * c, h // 2, w // 2  # after the squeeze, half of 4c is factored out
        self.dims = math.prod(self.shape)

    # --- the bijection on logit space ----------------------------------------------
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, H, W) -> (z of shape (N, D), log|det dz/dx|): factored-out latents first."""
        logdet = x.new_zeros(len(x))
        out = []
        for k, layers in enumerate(self.levels):
            last = k == len(self.levels) - 1
            for i, layer in enumerate(layers):
                if not last and i == 3:
                    x = squeeze(x)
                x, ld = layer(x)
                logdet = logdet + ld
            if not last:
                half = x.shape[1] // 2
                out.append(x[:, half:].flatten(1))
                x = x[:, :half]
        out.append(x.flatten(1))
        return torch.cat(out, dim=1), logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        shapes, (c, h, w) = [], self.shape
        for _ in range(len(self.levels) - 1):  # shapes of the factored-out latents
            c, h, w = 4 * c, h // 2, w // 2
            shapes.append((c // 2, h, w))
            c = c // 2
        pos = sum(math.prod(s) for s in shapes)
        x = z[:, pos:].view(len(z), c, h, w)
        for k in range(len(self.levels) - 1, -1, -1):
            layers = self.levels[k]
            if k < len(self.levels) - 1:
                s = shapes[k]
                start = sum(math.prod(t) for t in shapes[:k])
                x = torch.cat([x, z[:, start : start + math.prod(s)].view(len(z), *s)], dim=1)
            for i in range(len(layers) - 1, -1, -1):
                x = layers[i].inverse(x)
                if k < len(self.levels) - 1 and i == 3:
                    x = unsqueeze(x)
        return x

    # --- data <-> logit space ---------------------------------------------------------
    def to_logit(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """y in [0, 1] -> (logit(a + (1-2a) y), log|det| per example)."""
        p = self.alpha + (1 - 2 * self.alpha) * y
        logdet = (math.log(1 - 2 * self.alpha) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
        return torch.log(p) - torch.log1p(-p), logdet

    def from_logit(self, logits: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(logits) - self.alpha) / (1 - 2 * self.alpha)

    def dequantize(self, x: torch.Tensor) -> torch.Tensor:
        return (x + torch.rand_like(x)) / 256.0

    def log_density(self, y: torch.Tensor) -> torch.Tensor:
        """log p(y) per example, y in [0, 1]^D: exact."""
        logits, ld_logit = self.to_logit(y)
        z, ld_flow = self(logits)
        log_normal = -0.5 * (z**2 + LOG_2PI).sum(1)
        return log_normal + ld_flow + ld_logit

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        return dequantized_nll(self.log_density(self.dequantize(x)), self.dims)

    def test_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Exactness of the inverse on data: max |y - f^-1(f(y))| over the batch, in [0, 1]
        pixel units (one 8-bit level is 1/256 = 3.9e-3)."""
        y = self.dequantize(x)
        logits, _ = self.to_logit(y)
        z, _ = self(logits)
        logits_back = self.inverse(z)
        err = (self.from_logit(logits_back) - y).abs().flatten(1).amax(1)
        lerr = (logits_back - logits).abs().flatten(1).amax(1)
        return {"recon_err_max": err, "logit_recon_err_max": lerr}

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        z = torch.randn(n, self.dims, device=self.levels[0][0].scale.device) * temperature
        return self.from_logit(self.inverse(z)).clamp(0, 1) * 255.0
