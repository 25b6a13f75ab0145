"""DRAW, from DRAW: A Recurrent Neural Network For Image Generation (Gregor, Danihelka, Graves,
Rezende & Wierstra, ICML 2015, arXiv 1502.04623), sections 2-3.

A variational auto-encoder whose encoder and decoder are LSTMs run for T glimpses. At step t
(eqs. 3-8): x_hat = x - sigmoid(c_{t-1}); r_t = read(x, x_hat, h_dec_{t-1});
h_enc_t = LSTM_enc(h_enc_{t-1}, [r_t, h_dec_{t-1}]); z_t ~ q(z_t | h_enc_t) = N(mu, sigma);
h_dec_t = LSTM_dec(h_dec_{t-1}, z_t); c_t = c_{t-1} + write(h_dec_t). The image's likelihood is
Bernoulli(sigmoid(c_T)), and the loss is the negative ELBO, L^x + L^z (eqs. 9-12), in nats.

`attention=False` reads the whole image and its error ([x, x_hat]) and writes the whole canvas
through a linear layer (section 3.1). `attention=True` reads and writes through an N x N grid
of Gaussian filters (section 3.2, eqs. 19-29) whose centre, stride, variance and intensity
are emitted by a linear layer of h_dec.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from shortsci_bench.tasks.likelihood import importance_weighted_nll

LOG_2PI = math.log(2 * math.pi)


def filterbank(
    params: torch.Tensor, n: int, height: int, width: int, eps: float = 1e-8
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eqs. 21-25: params (B, 5) = (g~x, g~y, log sigma^2, log delta~, log gamma) ->
    Fx (B, N, W), Fy (B, N, H), gamma (B,). Pixel coordinates run 1..W and 1..H as in the
    paper, so g~ = 0 puts the grid's centre at the image's centre."""
    gx_, gy_, log_var, log_delta_, log_gamma = params.unbind(-1)
    gx = (width + 1) / 2 * (gx_ + 1)
    gy = (height + 1) / 2 * (gy_ + 1)
    delta = (
        (max(height, width) - 1) / (n - 1) * torch.exp(log_delta_)
        if n > 1
        else torch.exp(log_delta_)
    )
    var = torch.exp(log_var)
    i = torch.arange(1, n + 1, dtype=params.dtype, device=params.device)
    offsets = (i - n / 2 - 0.5)[None, :] * delta[:, None]  # (B, N)
    mu_x, mu_y = gx[:, None] + offsets, gy[:, None] + offsets
    a = torch.arange(1, width + 1, dtype=params.dtype, device=params.device)
    b = torch.arange(1, height + 1, dtype=params.dtype, device=params.device)
    fx = torch.exp(-((a[None, None, :] - mu_x[..., None]) ** 2) / (2 * var[:, None, None]))
    fy = torch.exp(-((b[None, None, :] - mu_y[..., None]) ** 2) / (2 * var[:, None, None]))
    fx = fx / (fx.sum(-1, keepdim=True) + eps)  # Z_x: each filter sums to one
    fy = fy / (fy.sum(-1, keepdim=True) + eps)
    return fx, fy, torch.exp(log_gamma)


def read_glimpse(
    img: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor, gamma: torch.Tensor
) -> torch.Tensor:
    """Eq. 27's read of one image: gamma Fy x Fx^T, (B, H, W) -> (B, N, N)."""
    return gamma[:, None, None] * fy @ img @ fx.transpose(1, 2)


def write_patch(
    patch: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor, gamma: torch.Tensor
) -> torch.Tensor:
    """Eq. 29: (1 / gamma) Fy^T w Fx, (B, N, N) -> (B, H, W)."""
    return (fy.transpose(1, 2) @ patch @ fx) / gamma[:, None, None]


class DRAW(nn.Module):
    """DRAW on (N, 1, H, W) binary images; `nll(x)` is the negative ELBO in nats per image."""

    def __init__(self, height: int = 28, width: int = 28, steps: int = 64, hidden: int = 256,
                 latent: int = 100, attention: bool = True, read_n: int = 2, write_n: int = 5,
                 iw_samples: int = 0):  # fmt: skip
        super().__init__()
        self.h, self.w, self.steps, self.hidden, self.latent = height, width, steps, hidden, latent
        self.attention, self.read_n, self.write_n = attention, read_n, write_n
        self.iw_samples = int(iw_samples)
        read_size = 2 * read_n * read_n if attention else 2 * height * width
        self.enc = nn.LSTMCell(read_size + hidden, hidden)
        self.dec = nn.LSTMCell(latent, hidden)
        self.q = nn.Linear(hidden, 2 * latent)  # mu and log sigma (eq. 1-2)
        if attention:
            self.read_params = nn.Linear(hidden, 5)
            self.write_params = nn.Linear(hidden, 5)
            self.write_out = nn.Linear(hidden, write_n * write_n)
        else:
            self.write_out = nn.Linear(hidden, height * width)

    def _read(self, x: torch.Tensor, x_hat: torch.Tensor, h_dec: torch.Tensor) -> torch.Tensor:
        if not self.attention:
            return torch.cat([x.flatten(1), x_hat.flatten(1)], dim=1)
        fx, fy, gamma = filterbank(self.read_params(h_dec), self.read_n, self.h, self.w)
        return torch.cat([read_glimpse(x, fx, fy, gamma).flatten(1),
                          read_glimpse(x_hat, fx, fy, gamma).flatten(1)], dim=1)  # fmt: skip

    def _write(self, h_dec: torch.Tensor) -> torch.Tensor:
        if not self.attention:
            return self.write_out(h_dec).view(-1, self.h, self.w)
        fx, fy, gamma = filterbank(self.write_params(h_dec), self.write_n, self.h, self.w)
        patch = self.write_out(h_dec).view(-1, self.write_n, self.write_n)
        return write_patch(patch, fx, fy, gamma)

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One pass with sampled z: (reconstruction NLL, KL, log q(z|x), log p(z)) per image."""
        img = x.view(-1, self.h, self.w)
        b = len(img)
        zeros = img.new_zeros(b, self.hidden)
        h_enc, c_enc, h_dec, c_dec = zeros, zeros, zeros, zeros
        canvas = img.new_zeros(b, self.h, self.w)
        kl = log_q = log_p = img.new_zeros(b)
        for _ in range(self.steps):
            x_hat = img - torch.sigmoid(canvas)
            r = self._read(img, x_hat, h_dec)
            h_enc, c_enc = self.enc(torch.cat([r, h_dec], dim=1), (h_enc, c_enc))
            mu, log_sigma = self.q(h_enc).chunk(2, dim=1)
            eps = torch.randn_like(mu)
            z = mu + torch.exp(log_sigma) * eps
            # eq. 11's closed-form KL against N(0, I), and the sample's log densities
            kl = kl + 0.5 * (mu**2 + torch.exp(2 * log_sigma) - 2 * log_sigma - 1).sum(1)
            log_q = log_q - (0.5 * eps**2 + log_sigma + 0.5 * LOG_2PI).sum(1)
            log_p = log_p - (0.5 * z**2 + 0.5 * LOG_2PI).sum(1)
            h_dec, c_dec = self.dec(z, (h_dec, c_dec))
            canvas = canvas + self._write(h_dec)
        rec = F.binary_cross_entropy_with_logits(canvas, img, reduction="none").flatten(1).sum(1)
        return rec, kl, log_q, log_p

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        rec, kl, _, _ = self.run(x)
        return rec + kl

    def eval_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        rec, kl, _, _ = self.run(x)
        return {"nll": rec + kl, "rec": rec, "kl": kl}

    def test_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The importance-weighted bound with K = `iw_samples` passes (Burda et al. 2016),
        log w = log p(x|z) + log p(z) - log q(z|x); `iw_k` records K."""
        if self.iw_samples < 1:
            return {}
        log_w = []
        for _ in range(self.iw_samples):
            rec, _, log_q, log_p = self.run(x)
            log_w.append(-rec + log_p - log_q)
        iw = importance_weighted_nll(torch.stack(log_w))
        return {"iw_nll": iw, "iw_k": torch.full_like(iw, float(self.iw_samples))}

    @torch.no_grad()
    def sample(self, n: int) -> list[torch.Tensor]:
        """Canvases sigmoid(c_t) for t = 1..T, drawn from the prior step by step."""
        dev = self.q.weight.device
        h_dec = c_dec = torch.zeros(n, self.hidden, device=dev)
        canvas = torch.zeros(n, self.h, self.w, device=dev)
        out = []
        for _ in range(self.steps):
            h_dec, c_dec = self.dec(torch.randn(n, self.latent, device=dev), (h_dec, c_dec))
            canvas = canvas + self._write(h_dec)
            out.append(torch.sigmoid(canvas))
        return out
