"""Batch-normalized LSTM (BN-LSTM) for sequential MNIST.

Cooijmans, Ballas, Laurent, Gulcehre & Courville, "Recurrent Batch Normalization",
ICLR 2017 (arXiv 1603.09025), section 3:

    (f~, i~, o~, g~) = BN(W_h h_t-1; gamma_h, 0) + BN(W_x x_t; gamma_x, 0) + b
    c_t = sigmoid(f~) * c_t-1 + sigmoid(i~) * tanh(g~)
    h_t = sigmoid(o~) * tanh(BN(c_t; gamma_c, beta_c))

- the input-to-hidden and hidden-to-hidden pre-activations are normalized separately, and
  the cell before the output;
- gamma and beta are shared over time, but the statistics are per time step: batch
  statistics in training, population statistics (one mean and variance per step) at test
  time; steps beyond the longest training sequence reuse the last step's statistics;
- gamma starts at 0.1 (the paper's choice: at 1 the gradient vanishes through time);
- the initial hidden state gets Gaussian noise in training (the paper's fix for in-order
  MNIST, whose leading blank pixels give zero batch variance, see `BNLSTM`).

Initialisation as in the paper: orthogonal weights, except an identity block in the
hidden-to-hidden matrix; forget-gate bias 1 (the official code's choice).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn


class SequenceBatchNorm(nn.Module):
    """Batch normalization of a (batch, features) input at time step `t`, with shared
    scale/shift and per-time-step population statistics for `max_steps` steps.

    `momentum` is the weight of each new batch in the running averages (as in
    `nn.BatchNorm1d`); `None` makes them a plain cumulative average, which
    `estimate_population_statistics` uses to compute them afresh. Each step is one fused
    `F.batch_norm` call that updates that step's row of the statistics in place.
    """

    def __init__(
        self,
        features: int,
        max_steps: int,
        gamma_init: float = 0.1,
        shift: bool = True,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
    ):
        super().__init__()
        self.features, self.max_steps = features, max_steps
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.full((features,), float(gamma_init)))
        self.bias = nn.Parameter(torch.zeros(features)) if shift else None
        self.register_buffer("running_mean", torch.zeros(max_steps, features))
        self.register_buffer("running_var", torch.ones(max_steps, features))
        # Training sequences seen: one per forward pass, counted by `new_sequence`.
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))
        # Evaluate with batch statistics instead of population statistics (a diagnostic).
        self.use_batch_statistics = False

    def new_sequence(self) -> None:
        """Call once per training sequence, before its steps."""
        self.num_batches_tracked += 1

    def _factor(self) -> float:
        if self.momentum is not None:
            return self.momentum
        return 1.0 / max(int(self.num_batches_tracked), 1)

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Normalize step `t`'s (batch, features) input."""
        if self.training or self.use_batch_statistics:
            track = self.training and t < self.max_steps
            return F.batch_norm(
                x,
                self.running_mean[t] if track else None,
                self.running_var[t] if track else None,
                self.weight,
                self.bias,
                training=True,
                momentum=self._factor(),
                eps=self.eps,
            )
        s = min(t, self.max_steps - 1)  # longer sequences: the last step's statistics
        return F.batch_norm(
            x, self.running_mean[s], self.running_var[s], self.weight, self.bias,
            training=False, eps=self.eps,
        )  # fmt: skip

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize every step of a (batch, time, features) input at once (for the input
        term, which does not depend on the recurrence): each (step, feature) pair is one
        channel of `F.batch_norm`."""
        batch, steps, features = x.shape
        n = min(steps, self.max_steps)
        weight = self.weight.repeat(n)
        bias = self.bias.repeat(n) if self.bias is not None else None
        if self.training or self.use_batch_statistics:
            track = self.training
            head = F.batch_norm(
                x[:, :n].reshape(batch, n * features),
                self.running_mean[:n].view(-1) if track else None,
                self.running_var[:n].view(-1) if track else None,
                weight,
                bias,
                training=True,
                momentum=self._factor(),
                eps=self.eps,
            ).view(batch, n, features)
            if n == steps:
                return head
            # Training on sequences longer than max_steps: no statistics kept there.
            tail = [self.forward(x[:, t], t) for t in range(n, steps)]
            return torch.cat([head, torch.stack(tail, dim=1)], dim=1)
        idx = torch.arange(steps, device=x.device).clamp(max=self.max_steps - 1)
        mean, var = self.running_mean[idx], self.running_var[idx]
        out = (x - mean) * torch.rsqrt(var + self.eps) * self.weight
        return out if self.bias is None else out + self.bias

    @torch.no_grad()
    def reset_statistics(self) -> None:
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()


def _orthogonal(rows: int, cols: int) -> torch.Tensor:
    w = torch.empty(rows, cols)
    nn.init.orthogonal_(w)
    return w


class BNLSTM(nn.Module):
    """An LSTM over a (batch, time, features) sequence, batch-normalized or not, with a
    softmax classifier on the last hidden state. `batchnorm=False` is the paper's LSTM
    baseline (same initialisation, no normalization, no noise).

    `h0_noise`: standard deviation of Gaussian noise added to the initial hidden state in
    training. The paper adds it for in-order MNIST: its first pixels are blank in every
    image, so without noise every sequence in a batch has the same hidden state there, the
    per-step batch variance of W_h h is zero, and BN's 1/sqrt(var + eps) multiplies the
    gradient at each such step by gamma/sqrt(eps) (31.6 at gamma 0.1): it explodes.

    Example:
        >>> net = BNLSTM(input_size=1, hidden=16, max_steps=12)
        >>> net(torch.rand(8, 12, 1)).shape
        torch.Size([8, 10])
    """

    def __init__(
        self,
        input_size: int = 1,
        hidden: int = 100,
        n_classes: int = 10,
        batchnorm: bool = True,
        gamma_init: float = 0.1,
        h0_noise: float = 0.0,
        max_steps: int = 784,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        forget_bias: float = 1.0,
    ):
        super().__init__()
        self.hidden, self.batchnorm, self.h0_noise = hidden, batchnorm, float(h0_noise)
        self.gamma_init = float(gamma_init)
        H = hidden
        # Gate blocks in the order (g, f, i, o); the identity block drives g, as in the
        # paper's code ("the hidden-to-hidden weight matrix ... initialize[d] to be the identity").
        self.W_x = nn.Parameter(_orthogonal(input_size, 4 * H))
        self.W_h = nn.Parameter(torch.cat([torch.eye(H), _orthogonal(H, 3 * H)], dim=1))
        bias = torch.zeros(4 * H)
        bias[H : 2 * H] = forget_bias
        self.bias = nn.Parameter(bias)
        if batchnorm:
            # No shift on the two pre-activation terms: `bias` already is one.
            self.bn_x = SequenceBatchNorm(4 * H, max_steps, gamma_init, False, eps, momentum)
            self.bn_h = SequenceBatchNorm(4 * H, max_steps, gamma_init, False, eps, momentum)
            self.bn_c = SequenceBatchNorm(H, max_steps, gamma_init, True, eps, momentum)
        self.readout = nn.Linear(H, n_classes)
        with torch.no_grad():
            self.readout.weight.copy_(_orthogonal(n_classes, H))
            self.readout.bias.zero_()

    def norms(self) -> list[SequenceBatchNorm]:
        return [m for m in self.modules() if isinstance(m, SequenceBatchNorm)]

    def forward(
        self, x: torch.Tensor, return_hidden: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        batch, steps, _ = x.shape
        H = self.hidden
        wx = x @ self.W_x  # (batch, time, 4H): the input term for all steps at once
        if self.batchnorm:
            if self.training:
                for norm in self.norms():
                    norm.new_sequence()
            wx = self.bn_x.forward_sequence(wx)
        # unbind, not wx[:, t]: a slice's backward fills a whole (batch, time, 4H) zero
        # tensor at every step (quadratic in the length); unbind's stacks once.
        wx_steps = (wx + self.bias).unbind(1)
        h = x.new_zeros(batch, H)
        if self.training and self.h0_noise > 0:
            h = h + self.h0_noise * torch.randn_like(h)
        c = x.new_zeros(batch, H)
        hiddens = []
        for t in range(steps):
            wh = h @ self.W_h
            if self.batchnorm:
                wh = self.bn_h(wh, t)
            g, f, i, o = (wx_steps[t] + wh).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(self.bn_c(c, t) if self.batchnorm else c)
            if return_hidden:
                hiddens.append(h)
        logits = self.readout(h)
        return (logits, hiddens) if return_hidden else logits


class BNTanhRNN(nn.Module):
    """The batch-normalized tanh RNN of the paper's Figure 1(a), where it shows the
    gradient vanishing through time for large gamma: h_t = tanh(BN(W_h h_t-1 + W_x x_t)),
    W_h the identity, W_x orthogonal, Gaussian noise on h_0 (as the paper's code).
    `batchnorm=False`: the plain tanh RNN (W_h = 0.99 I, as that code's baseline).
    Used here only as a probe of gradient flow at initialisation.
    """

    def __init__(
        self,
        input_size: int = 1,
        hidden: int = 100,
        n_classes: int = 10,
        batchnorm: bool = True,
        gamma_init: float = 0.1,
        h0_noise: float = 0.0,
        max_steps: int = 784,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.hidden, self.batchnorm, self.h0_noise = hidden, batchnorm, float(h0_noise)
        self.W_x = nn.Parameter(_orthogonal(input_size, hidden))
        self.W_h = nn.Parameter((1.0 if batchnorm else 0.99) * torch.eye(hidden))
        if batchnorm:  # BN's shift is the bias
            self.bn = SequenceBatchNorm(hidden, max_steps, gamma_init, True, eps)
        else:
            self.bias = nn.Parameter(torch.zeros(hidden))
        self.readout = nn.Linear(hidden, n_classes)
        with torch.no_grad():
            self.readout.weight.copy_(_orthogonal(n_classes, hidden))
            self.readout.bias.zero_()

    def forward(
        self, x: torch.Tensor, return_hidden: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        batch, steps, _ = x.shape
        if self.batchnorm and self.training:
            self.bn.new_sequence()
        wx = (x @ self.W_x).unbind(1)
        h = x.new_zeros(batch, self.hidden)
        if self.training and self.h0_noise > 0:
            h = h + self.h0_noise * torch.randn_like(h)
        hiddens = []
        for t in range(steps):
            pre = h @ self.W_h + wx[t]
            h = torch.tanh(self.bn(pre, t) if self.batchnorm else pre + self.bias)
            hiddens.append(h)
        logits = self.readout(h)
        return (logits, hiddens) if return_hidden else logits


@contextlib.contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """Evaluate `model` with batch statistics instead of population statistics."""
    norms = [m for m in model.modules() if isinstance(m, SequenceBatchNorm)]
    for m in norms:
        m.use_batch_statistics = True
    try:
        yield
    finally:
        for m in norms:
            m.use_batch_statistics = False


@torch.no_grad()
def estimate_population_statistics(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], seed: int = 0
) -> int:
    """Recompute every per-step population mean and variance as the plain average of the
    batch statistics over `batches` (training data, training mode), as the paper's code
    does after training; the running averages lag a model whose weights keep moving.
    Leaves weights, mode and the global random state unchanged; returns the batch count."""
    norms = [m for m in model.modules() if isinstance(m, SequenceBatchNorm)]
    if not norms:
        return 0
    was_training = model.training
    momenta = [m.momentum for m in norms]
    n = 0
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)  # the training-time noise on h_0, drawn reproducibly
        try:
            model.train()
            for m in norms:
                m.reset_statistics()
                m.momentum = None
            for x, _ in batches:
                model(x)
                n += 1
        finally:
            for m, mom in zip(norms, momenta):
                m.momentum = mom
            model.train(was_training)
    return n


def hidden_gradient_norms(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int | None = None
) -> torch.Tensor:
    """||dLoss/dh_t|| for t = 1..T on one batch, in training mode (batch statistics), in
    float64 on a copy of `model` (so deep underflow stays measurable and the model, its
    statistics and the global random state are untouched). The paper's Figure 1(a) plots
    this quantity for a BN tanh RNN to show that gamma = 1 lets the gradient vanish.
    `model.forward(x, return_hidden=True)` must return (logits, [h_1, ..., h_T]). The noise
    on h_0 comes from the global random stream (reseeded by `seed` if given)."""
    probe = copy.deepcopy(model).double().train()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        if seed is not None:
            torch.manual_seed(seed)
        logits, hiddens = probe(x.double(), return_hidden=True)
        loss = F.cross_entropy(logits, y)
        grads = torch.autograd.grad(loss, hiddens)
    return torch.stack([g.norm() for g in grads]).detach()


def log10_ratio(a: float, b: float) -> float:
    """log10(a / b), with norms that underflowed to 0 floored at the smallest double."""
    tiny = torch.finfo(torch.float64).tiny
    return math.log10(max(a, tiny)) - math.log10(max(b, tiny))
