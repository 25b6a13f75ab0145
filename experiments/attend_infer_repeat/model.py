"""Attend, Infer, Repeat (Eslami, Heess, Weber, Tassa, Szepesvari, Kavukcuoglu & Hinton,
NIPS 2016, arXiv 1603.08575): a VAE whose encoder is a recurrent network that, at each of up
to N steps, attends to one object of the scene and infers whether it is there (z_pres), where
it is (z_where) and what it is (z_what).

Generative model (per scene): z_pres_1 >= z_pres_2 >= ... (a Bernoulli chain: each step is
present with prior probability `z_pres_prior` while the previous one is); for each present
object z_what ~ N(0, I) and z_where = (s, tx, ty) ~ N(where_prior_mean, where_prior_std);
a small decoder MLP turns z_what into a `window` x `window` object, which the inverse
spatial transformer (F.affine_grid / F.grid_sample) scales by 1/s and moves to (tx, ty);
the canvas is the sum of the placed objects, and x ~ N(canvas, likelihood_std^2) per pixel.

Inference (the paper's recurrent network): an LSTM reads the image and the previous step's
latents; its state gives q(z_pres) (Bernoulli), q(z_where) (Gaussian); the spatial
transformer crops the window at z_where from the image, and an encoder MLP gives q(z_what)
(Gaussian). Continuous latents use the reparameterisation trick; the discrete z_pres uses
the likelihood-ratio (REINFORCE) estimator with NVIL's variance reduction (a learned,
input-dependent baseline, and centring and scaling by running moments of the signal).

Coordinates are those of `F.affine_grid` (align_corners=False): the canvas spans [-1, 1]^2;
object coordinate u and canvas coordinate v are related by u = s (v - t), so an object's
window covers the square of half-width 1/s centred at t.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-6


def glimpse_theta(z_where: torch.Tensor) -> torch.Tensor:
    """(B, 3) (s, tx, ty) -> (B, 2, 3): window coordinate u -> canvas coordinate u / s + t
    (reading the window out of the canvas)."""
    s, tx, ty = z_where.unbind(-1)
    inv, zero = 1.0 / s, torch.zeros_like(s)
    return torch.stack([torch.stack([inv, zero, tx], -1), torch.stack([zero, inv, ty], -1)], -2)


def render_theta(z_where: torch.Tensor) -> torch.Tensor:
    """(B, 3) -> (B, 2, 3): canvas coordinate v -> window coordinate s (v - t) (writing the
    window into the canvas): the inverse of `glimpse_theta`."""
    s, tx, ty = z_where.unbind(-1)
    zero = torch.zeros_like(s)
    return torch.stack(
        [torch.stack([s, zero, -s * tx], -1), torch.stack([zero, s, -s * ty], -1)], -2
    )


def read_window(images: torch.Tensor, z_where: torch.Tensor, window: int) -> torch.Tensor:
    """Crop (B, 1, window, window) out of images (B, 1, H, W) at z_where."""
    grid = F.affine_grid(glimpse_theta(z_where), [len(images), 1, window, window], False)
    return F.grid_sample(images, grid, align_corners=False)


def write_window(objects: torch.Tensor, z_where: torch.Tensor, size: int) -> torch.Tensor:
    """Place objects (B, 1, w, w) on a blank (B, 1, size, size) canvas at z_where."""
    grid = F.affine_grid(render_theta(z_where), [len(objects), 1, size, size], False)
    return F.grid_sample(objects, grid, align_corners=False)


def gaussian_kl(mu: torch.Tensor, std: torch.Tensor, mu0, std0) -> torch.Tensor:
    """KL(N(mu, std^2) || N(mu0, std0^2)) summed over the last dimension."""
    var_ratio = (std / std0) ** 2
    return 0.5 * (var_ratio + ((mu - mu0) / std0) ** 2 - 1.0 - var_ratio.log()).sum(-1)


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class AIR(nn.Module):
    """AIR with up to `max_steps` objects. `nll(x)` is -ELBO per scene (nats); `loss(x)`
    adds the REINFORCE surrogate and the baseline's regression (what training minimises);
    `infer_counts(x)` the number of objects found, z_pres taken at its mode step by step."""

    def __init__(
        self,
        canvas: int = 50,
        window: int = 28,
        max_steps: int = 3,
        lstm_hidden: int = 256,
        encoder_hidden: int = 200,
        decoder_hidden: int = 200,
        z_what: int = 50,
        baseline_hidden: int = 256,
        likelihood_std: float = 0.3,
        z_pres_prior: float = 0.01,
        where_prior_mean: tuple[float, float, float] = (1.8, 0.0, 0.0),
        where_prior_std: tuple[float, float, float] = (0.2, 1.0, 1.0),
        decoder_bias: float = -2.0,
        nvil_decay: float = 0.9,
        reinforce: bool = True,
        pres_bias: float = 0.0,
        rnn_pool: int = 1,
    ):
        super().__init__()
        self.canvas, self.window, self.max_steps = canvas, window, max_steps
        self.z_what_dim, self.lstm_hidden = z_what, lstm_hidden
        self.likelihood_std, self.z_pres_prior = likelihood_std, z_pres_prior
        self.nvil_decay, self.reinforce = nvil_decay, reinforce
        # The recurrent network (and the baseline) may read the image average-pooled by
        # `rnn_pool` (1: the full image, the paper's); the glimpses always read full resolution.
        self.rnn_pool = int(rnn_pool)
        seen = (canvas // self.rnn_pool) ** 2
        self.register_buffer("where_mu0", torch.tensor(where_prior_mean, dtype=torch.float32))
        self.register_buffer("where_std0", torch.tensor(where_prior_std, dtype=torch.float32))
        latent = 3 + z_what + 1  # the previous step's z_where, z_what, z_pres
        self.rnn = nn.LSTMCell(seen + latent, lstm_hidden)
        self.pres_head = nn.Linear(lstm_hidden, 1)
        self.where_head = nn.Linear(lstm_hidden, 6)
        self.encoder = mlp([window * window, encoder_hidden, 2 * z_what])
        self.decoder = mlp([z_what, decoder_hidden, window * window])
        # The baseline of step t's learning signal, from the image (NVIL's input-dependent
        # baseline); trained by regression on the signal, never through the ELBO.
        self.baseline = mlp([seen, baseline_hidden, max_steps])
        with torch.no_grad():
            # Start z_where's posterior at its prior, objects faint and z_pres at q = sigmoid(pres_bias):
            # choices of ours that keep early steps from placing bright blobs anywhere.
            self.where_head.weight.mul_(0.1)
            self.where_head.bias.zero_()
            self.where_head.bias[:3] = self.where_mu0
            self.where_head.bias[3:] = _softplus_inv(0.1 * self.where_std0)
            self.decoder[-1].bias.fill_(decoder_bias)
            self.pres_head.bias.fill_(pres_bias)
        # NVIL's running mean and variance of the centred signal, per step.
        self.register_buffer("signal_mean", torch.zeros(max_steps))
        self.register_buffer("signal_var", torch.ones(max_steps))

    def seen(self, x: torch.Tensor) -> torch.Tensor:
        """The image as the recurrent network and the baseline read it, flattened."""
        if self.rnn_pool > 1:
            x = F.avg_pool2d(x, self.rnn_pool)
        return x.flatten(1)

    # --- one pass of inference and generation ---------------------------------
    def forward(self, x: torch.Tensor, mode: str = "sample") -> dict[str, torch.Tensor]:
        """Run the N steps on x (B, 1, H, W). `mode="sample"` draws every latent (training,
        the ELBO); `"mode"` takes z_pres at q > 0.5 and z_where, z_what at their means (counts).
        Returns per-scene loglik, per-step kl (B, N), z_pres (B, N), log_q_pres (B, N), live
        (B, N: whether step t was reached, i.e. z_pres_{t-1} = 1) and the canvas."""
        b = len(x)
        flat = self.seen(x)
        h = flat.new_zeros(b, self.lstm_hidden)
        c = torch.zeros_like(h)
        prev = flat.new_zeros(b, 3 + self.z_what_dim + 1)
        present = flat.new_ones(b)
        canvas = torch.zeros_like(x)
        kls, pres, logqs, lives, wheres = [], [], [], [], []
        p0 = self.z_pres_prior
        for _ in range(self.max_steps):
            h, c = self.rnn(torch.cat([flat, prev], 1), (h, c))
            q = torch.sigmoid(self.pres_head(h)).squeeze(1).clamp(EPS, 1 - EPS)
            where = self.where_head(h)
            w_mu, w_std = where[:, :3], F.softplus(where[:, 3:]) + 1e-4
            if mode == "sample":
                z_where = w_mu + w_std * torch.randn_like(w_std)
            else:
                z_where = w_mu
            # a scale near zero would blow the window up to infinity; the prior (1.8 +- 0.2)
            # puts no mass there, so the clamp only guards early, wild samples
            z_where = torch.cat([z_where[:, :1].clamp(min=0.3), z_where[:, 1:]], 1)
            glimpse = read_window(x, z_where, self.window).flatten(1)
            enc = self.encoder(glimpse)
            what_mu, what_std = enc[:, : self.z_what_dim], F.softplus(enc[:, self.z_what_dim :])
            what_std = what_std + 1e-4
            if mode == "sample":
                z_what = what_mu + what_std * torch.randn_like(what_std)
                z_pres = torch.bernoulli(q.detach()) * present
            else:
                z_what = what_mu
                z_pres = (q > 0.5).float() * present
            # log q(z_pres_t) and the z_pres KL term count only on live steps (z_pres_{t-1}=1)
            log_q = present * (z_pres * q.log() + (1 - z_pres) * (1 - q).log())
            log_p = present * (z_pres * math.log(p0) + (1 - z_pres) * math.log(1 - p0))
            kl = (log_q - log_p) + z_pres * (
                gaussian_kl(w_mu, w_std, self.where_mu0, self.where_std0)
                + gaussian_kl(what_mu, what_std, 0.0, 1.0)
            )
            obj = torch.sigmoid(self.decoder(z_what)).view(b, 1, self.window, self.window)
            canvas = canvas + z_pres.view(b, 1, 1, 1) * write_window(obj, z_where, x.shape[-1])
            kls.append(kl)
            pres.append(z_pres)
            logqs.append(log_q)
            lives.append(present)
            wheres.append(z_where)
            present = z_pres
            prev = torch.cat([z_where, z_what, z_pres[:, None]], 1)
        loglik = (
            torch.distributions.Normal(canvas, self.likelihood_std).log_prob(x).flatten(1).sum(1)
        )
        return {
            "loglik": loglik,
            "kl": torch.stack(kls, 1),
            "z_pres": torch.stack(pres, 1),
            "log_q_pres": torch.stack(logqs, 1),
            "live": torch.stack(lives, 1),
            "z_where": torch.stack(wheres, 1),
            "canvas": canvas,
        }

    # --- objectives -------------------------------------------------------------
    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """-ELBO per scene, nats (one sample of every latent)."""
        out = self(x)
        return -(out["loglik"] - out["kl"].sum(1))

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-scene training loss: -ELBO (its reparameterised part backpropagates), plus
        -(centred, scaled learning signal) x log q(z_pres_t) for each live step t (REINFORCE
        with NVIL), plus the baseline's squared error. The learning signal of step t is the
        part of the ELBO that z_pres_t can change: log p(x | z) - sum_{k >= t} kl_k."""
        out = self(x)
        elbo = out["loglik"] - out["kl"].sum(1)
        loss = -elbo
        terms = {"neg_elbo": -elbo.detach(), "count": out["z_pres"].sum(1).detach()}
        if self.reinforce:
            kl_to_go = out["kl"].flip(1).cumsum(1).flip(1)  # sum_{k >= t} kl_k
            signal = (out["loglik"][:, None] - kl_to_go).detach()  # (B, N)
            base = self.baseline(self.seen(x).detach())  # (B, N)
            live = out["live"].detach()
            resid = signal - base.detach()
            if self.training:
                with torch.no_grad():
                    n = live.sum(0).clamp(min=1)
                    mean = (resid * live).sum(0) / n
                    var = ((resid - mean) ** 2 * live).sum(0) / n
                    has = live.sum(0) > 0
                    d = self.nvil_decay
                    self.signal_mean.copy_(
                        torch.where(has, d * self.signal_mean + (1 - d) * mean, self.signal_mean)
                    )
                    self.signal_var.copy_(
                        torch.where(has, d * self.signal_var + (1 - d) * var, self.signal_var)
                    )
            scaled = (resid - self.signal_mean) / self.signal_var.sqrt().clamp(min=1.0)
            loss = loss - (scaled * out["log_q_pres"] * live).sum(1)
            loss = loss + ((signal - base) ** 2 * live / self.signal_var.clamp(min=1.0)).sum(1)
        return loss, terms

    @torch.no_grad()
    def infer_counts(self, x: torch.Tensor) -> torch.Tensor:
        """Number of objects found in each scene (z_pres at its mode step by step)."""
        return self(x, mode="mode")["z_pres"].sum(1).long()


def _softplus_inv(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


def count_accuracy(predicted: torch.Tensor, true: torch.Tensor) -> float:
    """Fraction of scenes whose inferred number of objects equals the true number."""
    if predicted.shape != true.shape:
        raise ValueError(f"shapes differ: {tuple(predicted.shape)} vs {tuple(true.shape)}")
    if len(true) == 0:
        raise ValueError("no scenes")
    return float((predicted.long() == true.long()).float().mean())
