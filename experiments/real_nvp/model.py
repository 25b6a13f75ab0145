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

The s and t networks and the normalisations follow sections 3.7 and 4.1 (details the paper
leaves open are taken from the authors' code, tensorflow/models research/real_nvp, marked
[code]): "deep residual networks with batch normalization and weight normalization"
(pre-activation blocks; convolutions weight-normalised, w = g v/|v|; batch norms without a
gain [code]); s = scale * tanh(raw s) (a learned scale per channel; the code has one per
coupling); batch normalisation of each coupling layer's output (3.7), here, as in the code,
of the transformed values, per channel (the code's statistics also count the masked zeros of
a checkerboard; ours, the transformed sites only), with log-det -1/2 sum log(var + eps): in
training the batch's statistics (gradients flow through them, as in the code), running
averages (momentum 0.1, eps 1e-4 [code]) in evaluation and in the inverse, where the norm is
a fixed affine map, so log-density, inverse and sampling are exact in eval mode; and L2
regularisation of the weight scale parameters with coefficient 5e-5 (4.1; the code's
l2_coeff, on the weight-norm magnitudes and the tanh scales; RealNVPTask adds it). Not
built: the appendix-E variant of batch norm (a running average over recent minibatches in
training), which the paper says it uses but the released code leaves off by default (bn_lag
= 0), and the code's extras the paper does not describe (an input batch norm and
concatenated ReLU on the conditioner, 1x1 skip connections from every block, doubling
features after each squeeze).
`batch_norm=False, weight_norm=False` gives the plain flow of plain convolutions.
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


class BatchNorm(nn.Module):
    """Per-channel batch normalisation of (N, C, H, W) maps without a learned gain (the
    authors' code has none; a weight-normalised layer or the flow sets the scale), with an
    optional learned shift. Training: the batch's mean and (biased) variance over examples
    and the sites `where` is 1 (all sites if None), and running averages updated with
    `momentum` (the code's decay 0.1); eval: the running averages. `momentum=1` makes the
    running statistics those of the last training batch (used by the tests)."""

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-4,
                 shift: bool = True):  # fmt: skip
        super().__init__()
        self.momentum, self.eps = float(momentum), float(eps)
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.shift = nn.Parameter(torch.zeros(channels)) if shift else None

    def stats(self, x: torch.Tensor, where: torch.Tensor | None = None):
        """(mean, var + eps), each of shape (1, C, 1, 1)."""
        if self.training:
            w = torch.ones_like(x[:1, :1]) if where is None else where
            count = len(x) * w.sum()
            mean = (x * w).sum((0, 2, 3)) / count
            var = (((x - mean.view(1, -1, 1, 1)) * w) ** 2).sum((0, 2, 3)) / count
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach(), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return mean.view(1, -1, 1, 1), var.view(1, -1, 1, 1) + self.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.stats(x)
        y = (x - mean) * torch.rsqrt(var)
        return y if self.shift is None else y + self.shift.view(1, -1, 1, 1)


class WNConv2d(nn.Module):
    """A 'same' convolution with weight normalisation (Salimans & Kingma 2016): each output
    filter is w = g v / |v|. `magnitude=False` drops g (|w| = 1) where a batch norm follows,
    which would undo any scale; `zero=True` starts g (and the bias) at 0, so the layer starts
    as the zero map. g starts at |v| otherwise: PyTorch's default convolution at init."""

    def __init__(self, cin: int, cout: int, k: int = 3, magnitude: bool = True,
                 bias: bool = True, zero: bool = False):  # fmt: skip
        super().__init__()
        self.v = nn.Parameter(nn.Conv2d(cin, cout, k).weight.detach().clone())
        norm = self.v.detach().flatten(1).norm(dim=1)
        self.g = nn.Parameter(torch.zeros_like(norm) if zero else norm) if magnitude else None
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.padding = k // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.v / self.v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        if self.g is not None:
            w = w * self.g.view(-1, 1, 1, 1)
        return F.conv2d(x, w, self.bias, padding=self.padding)


def _conv(cin, cout, weight_norm, magnitude=True, bias=True, zero=False) -> nn.Module:
    if weight_norm:
        return WNConv2d(cin, cout, 3, magnitude=magnitude, bias=bias, zero=zero)
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
    if zero:
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    return conv


class ResNet(nn.Module):
    """The s and t network (section 3.7: "deep residual networks with batch normalization and
    weight normalization"): 3x3 conv in -> F, `blocks` pre-activation residual blocks
    ([BN], ReLU, conv, [BN], ReLU, conv), [BN], ReLU, 3x3 conv F -> 2 x out (s and t); [BN]
    only with `batch_norm`, weight-normalised convolutions with `weight_norm`. The last
    layer starts at zero, so s = t = 0 at initialisation."""

    def __init__(self, in_ch: int, out_ch: int, features: int, blocks: int,
                 batch_norm: bool = False, weight_norm: bool = False,
                 bn_momentum: float = 0.1, bn_eps: float = 1e-4):  # fmt: skip
        super().__init__()

        def norm() -> nn.Module:
            return BatchNorm(features, bn_momentum, bn_eps) if batch_norm else nn.Identity()

        wn, bn = weight_norm, batch_norm
        self.inp = _conv(in_ch, features, wn)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                norm(),
                nn.ReLU(),
                _conv(features, features, wn, magnitude=not bn, bias=not bn),
                norm(),
                nn.ReLU(),
                _conv(features, features, wn),
            )  # fmt: skip
            for _ in range(blocks)
        )
        self.head = nn.Sequential(norm(), nn.ReLU())
        self.out = _conv(features, 2 * out_ch, wn, zero=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.inp(x)
        for block in self.blocks:
            y = y + block(y)
        s, t = self.out(self.head(y)).chunk(2, dim=1)
        return s, t


class AffineCoupling(nn.Module):
    """One affine coupling. `kind="checkerboard"`: transform the sites where the mask is 0,
    conditioned on the others (the mask is an extra input channel); `kind="channel"`:
    transform one half of the channels conditioned on the other (`parity` picks which).
    s = scale * tanh(raw s) with a learned scale per channel. With `batch_norm`, the
    transformed values are then batch-normalised as a layer of the flow (section 3.7):
    (y - mean) / sqrt(var + eps) per channel, log-det -1/2 log(var + eps) per transformed
    value; batch statistics in training, running averages in eval and in the inverse."""

    def __init__(self, channels: int, kind: str, parity: int, features: int, blocks: int,
                 batch_norm: bool = False, weight_norm: bool = False,
                 bn_momentum: float = 0.1, bn_eps: float = 1e-4):  # fmt: skip
        super().__init__()
        self.kind, self.parity = kind, parity
        net = dict(batch_norm=batch_norm, weight_norm=weight_norm, bn_momentum=bn_momentum,
                   bn_eps=bn_eps)  # fmt: skip
        if kind == "checkerboard":
            self.net = ResNet(channels + 1, channels, features, blocks, **net)
            out = channels
        elif kind == "channel":
            half = channels // 2
            self.net = ResNet(half, channels - half, features, blocks, **net)
            out = channels - half
        else:
            raise ValueError(f"coupling kind {kind!r}: checkerboard or channel")
        self.scale = nn.Parameter(torch.ones(1, out, 1, 1))
        self.norm = BatchNorm(out, bn_momentum, bn_eps, shift=False) if batch_norm else None

    def _st(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.net(cond)
        return self.scale * torch.tanh(s), t

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half = x.shape[1] // 2
        a, b = x[:, :half], x[:, half:]
        return (a, b) if self.parity == 0 else (b, a)  # (conditioner, transformed)

    def _join(self, cond: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
        return torch.cat([cond, moved] if self.parity == 0 else [moved, cond], dim=1)

    def _normalize(self, y: torch.Tensor, where: torch.Tensor | None):
        """Batch norm of the transformed values (`where`: their sites; None: all)."""
        if self.norm is None:
            return y, y.new_zeros(len(y))
        mean, var = self.norm.stats(y, where)
        z = (y - mean) * torch.rsqrt(var)
        sites = y.shape[2] * y.shape[3] if where is None else where.sum()
        logdet = -0.5 * torch.log(var).sum() * sites
        if where is not None:
            z = where * z + (1 - where) * y
        return z, logdet.expand(len(y))

    def _denormalize(self, z: torch.Tensor, where: torch.Tensor | None) -> torch.Tensor:
        if self.norm is None:
            return z
        mean = self.norm.running_mean.view(1, -1, 1, 1)
        y = z * torch.sqrt(self.norm.running_var.view(1, -1, 1, 1) + self.norm.eps) + mean
        return y if where is None else where * y + (1 - where) * z

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x -> (y, log|det dy/dx| per example)."""
        if self.kind == "checkerboard":
            b = checkerboard(x.shape[2], x.shape[3], self.parity, x.device).to(x.dtype)
            s, t = self._st(torch.cat([x * b, b.expand(len(x), 1, -1, -1)], dim=1))
            s, t = s * (1 - b), t * (1 - b)
            y, ld = self._normalize(x * torch.exp(s) + t, 1 - b)
            return y, s.flatten(1).sum(1) + ld
        cond, moved = self._split(x)
        s, t = self._st(cond)
        moved, ld = self._normalize(moved * torch.exp(s) + t, None)
        return self._join(cond, moved), s.flatten(1).sum(1) + ld

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """The inverse of the eval-mode map (running statistics), as in sampling."""
        if self.kind == "checkerboard":
            b = checkerboard(y.shape[2], y.shape[3], self.parity, y.device).to(y.dtype)
            y = self._denormalize(y, 1 - b)
            s, t = self._st(torch.cat([y * b, b.expand(len(y), 1, -1, -1)], dim=1))
            s, t = s * (1 - b), t * (1 - b)
            return (y - t) * torch.exp(-s)
        cond, moved = self._split(y)
        s, t = self._st(cond)
        return self._join(cond, (self._denormalize(moved, None) - t) * torch.exp(-s))

    def scale_parameters(self) -> list[nn.Parameter]:
        """The parameters under the paper's L2 on weight scales (section 4.1): the weight-norm
        magnitudes g, and the tanh scale (the authors' code includes both)."""
        gs = [m.g for m in self.net.modules() if isinstance(m, WNConv2d) and m.g is not None]
        return [self.scale, *gs]


class RealNVP(nn.Module):
    """The multi-scale flow on (C, H, W) images of 8-bit values. `scales`: how many; each but
    the last halves the resolution once and factors out half the channels. `nll(x)` is the
    discrete NLL bound in nats per image (dequantized with fresh noise each call)."""

    def __init__(self, shape: tuple[int, int, int] = (1, 28, 28), scales: int = 2,
                 features: int = 64, blocks: int = 8, alpha: float = 0.05,
                 batch_norm: bool = True, weight_norm: bool = True,
                 bn_momentum: float = 0.1, bn_eps: float = 1e-4):  # fmt: skip
        super().__init__()
        self.shape, self.alpha = tuple(shape), float(alpha)
        c, h, w = self.shape
        self.levels = nn.ModuleList()
        norms = dict(batch_norm=batch_norm, weight_norm=weight_norm, bn_momentum=bn_momentum,
                     bn_eps=bn_eps)  # fmt: skip

        def coupling(ch: int, kind: str, i: int) -> AffineCoupling:
            return AffineCoupling(ch, kind, i % 2, features, blocks, **norms)

        for k in range(scales):
            if k == scales - 1:
                self.levels.append(nn.ModuleList(coupling(c, "checkerboard", i) for i in range(4)))
                break
            if h % 2 or w % 2:
                raise ValueError(f"scale {k}: {h}x{w} cannot be squeezed; use fewer scales")
            layers = [coupling(c, "checkerboard", i) for i in range(3)]
            layers += [coupling(4 * c, "channel", i) for i in range(3)]
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

    def scale_penalty(self) -> torch.Tensor:
        """Sum of squares of every coupling's scale parameters (the L2 term of section 4.1)."""
        params = [p for layers in self.levels for layer in layers for p in layer.scale_parameters()]
        return sum((p**2).sum() for p in params)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """Exact samples x = f^-1(z): in eval mode, so every batch norm is the fixed affine
        map of its running statistics that the inverse undoes."""
        was_training = self.training
        self.eval()
        try:
            z = torch.randn(n, self.dims, device=self.levels[0][0].scale.device) * temperature
            return self.from_logit(self.inverse(z)).clamp(0, 1) * 255.0
        finally:
            self.train(was_training)
