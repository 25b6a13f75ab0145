"""Fast weights RNN and its baselines (IRNN, LSTM) for associative retrieval.

Ba, Hinton, Mnih, Leibo & Ionescu, "Using Fast Weights to Attend to the Recent Past",
NIPS 2016 (arXiv 1610.06258), section 3:

    A(t)       = lambda A(t-1) + eta h(t) h(t)^T                      (fast weights)
    h_0(t+1)   = f(W h(t) + C x(t))                                   (preliminary state)
    h_s+1(t+1) = f(LN(W h(t) + C x(t) + A(t) h_s(t+1))),  s < S       (inner loop)
    h(t+1)     = h_S(t+1)

with f = ReLU and LN = layer normalization. Unrolled, A(t) h = eta sum_tau lambda^(t-tau)
h(tau) (h(tau)^T h): an attention over past hidden states with scalar-product weights
(the paper's "memory" view, which needs no per-sequence R x R matrix and so batches
easily). `FastWeightsRNN` computes either form (`form="recurrent"` or `"memory"`); they
agree to rounding (tests/test_fastweights_assoc.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

FORMS = ("memory", "recurrent")


class FastWeightsRNN(nn.Module):
    """The fast-weights recurrence over a sequence of input vectors; returns the final
    hidden state (batch, hidden).

    Example:
        >>> core = FastWeightsRNN(input_size=8, hidden=20)
        >>> core(torch.randn(4, 5, 8)).shape
        torch.Size([4, 20])
    """

    def __init__(
        self,
        input_size: int,
        hidden: int,
        eta: float = 0.5,
        lam: float = 0.9,
        inner_steps: int = 1,
        layer_norm: bool = True,
        form: str = "memory",
        slow_init_scale: float = 0.05,
    ):
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"form={form!r}: choose one of {FORMS}")
        self.hidden, self.eta, self.lam = hidden, float(eta), float(lam)
        self.inner_steps, self.form = int(inner_steps), form
        self.W = nn.Linear(hidden, hidden, bias=False)  # slow recurrent weights
        self.C = nn.Linear(input_size, hidden)  # input weights (and the bias)
        self.norm = nn.LayerNorm(hidden) if layer_norm else nn.Identity()
        with torch.no_grad():  # a scaled identity, as for the IRNN
            self.W.weight.copy_(slow_init_scale * torch.eye(hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.form == "memory":
            return self._forward_memory(x)
        return self._forward_recurrent(x)

    def _inner_loop(
        self, boundary: torch.Tensor, fast: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """h_0 = f(boundary), then S steps of h_s+1 = f(LN(boundary + A(t) h_s))."""
        hs = F.relu(boundary)
        for _ in range(self.inner_steps):
            hs = F.relu(self.norm(boundary + fast(hs)))
        return hs

    @staticmethod
    def _no_memory(hs: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(hs)

    def _forward_recurrent(self, x: torch.Tensor) -> torch.Tensor:
        """Keeps A(t) explicitly: one R x R matrix per sequence."""
        batch, steps, _ = x.shape
        cx = self.C(x).unbind(1)  # unbind: cheaper backward than slicing per step
        h = x.new_zeros(batch, self.hidden)
        A = x.new_zeros(batch, self.hidden, self.hidden)
        for t in range(steps):
            A = self.lam * A + self.eta * (h.unsqueeze(2) * h.unsqueeze(1))
            h = self._inner_loop(
                self.W(h) + cx[t], lambda hs, A=A: torch.bmm(A, hs.unsqueeze(2)).squeeze(2)
            )
        return h

    def _forward_memory(self, x: torch.Tensor) -> torch.Tensor:
        """A(t) h_s as eta * sum_tau lambda^(t-tau) h(tau) <h(tau), h_s>: attention over
        the stored hidden states (batch, t, R); no R x R matrices."""
        batch, steps, _ = x.shape
        cx = self.C(x).unbind(1)  # unbind: cheaper backward than slicing per step
        h = x.new_zeros(batch, self.hidden)
        stored: list[torch.Tensor] = []  # h(1) .. h(t), oldest first
        # decay[k] = eta * lambda^k: the weight of the state stored k steps ago
        decay = self.eta * self.lam ** torch.arange(steps, device=x.device, dtype=x.dtype)
        for t in range(steps):
            fast = self._no_memory
            if stored:
                past = torch.stack(stored, dim=1)
                weights = decay[:t].flip(0)

                def fast(hs: torch.Tensor, past=past, weights=weights) -> torch.Tensor:
                    scores = torch.einsum("btr,br->bt", past, hs) * weights
                    return torch.einsum("bt,btr->br", scores, past)

            h = self._inner_loop(self.W(h) + cx[t], fast)
            stored.append(h)
        return h


class IRNN(nn.Module):
    """ReLU RNN with identity-initialised recurrence (Le, Jaitly & Hinton 2015), the
    paper's IRNN baseline; returns the final hidden state."""

    def __init__(self, input_size: int, hidden: int, identity_scale: float = 1.0):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden, nonlinearity="relu", batch_first=True)
        with torch.no_grad():
            self.rnn.weight_hh_l0.copy_(identity_scale * torch.eye(hidden))
            self.rnn.bias_hh_l0.zero_()
            self.rnn.bias_ih_l0.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[1][-1]


class LSTM(nn.Module):
    """One-layer LSTM baseline; returns the final hidden state."""

    def __init__(self, input_size: int, hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[1][0][-1]


class AssociativeRetrievalNet(nn.Module):
    """Token embedding -> recurrent core (`fast_weights`, `irnn` or `lstm`) with R hidden
    units -> a ReLU layer -> 10 digit logits, read from the last step's hidden state.

    Example:
        >>> net = AssociativeRetrievalNet(core="fast_weights", hidden=20)
        >>> net(torch.randint(0, 37, (4, 19))).shape
        torch.Size([4, 10])
    """

    def __init__(
        self,
        core: str = "fast_weights",
        hidden: int = 50,
        vocab_size: int = 37,
        embedding_dim: int = 100,
        readout_hidden: int = 100,
        n_classes: int = 10,
        eta: float = 0.5,
        lam: float = 0.9,
        inner_steps: int = 1,
        layer_norm: bool = True,
        form: str = "memory",
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        if core == "fast_weights":
            self.core = FastWeightsRNN(
                embedding_dim, hidden, eta, lam, inner_steps, layer_norm, form
            )
        elif core == "irnn":
            self.core = IRNN(embedding_dim, hidden)
        elif core == "lstm":
            self.core = LSTM(embedding_dim, hidden)
        else:
            raise ValueError(f"core={core!r}: choose fast_weights, irnn or lstm")
        self.readout = nn.Sequential(
            nn.Linear(hidden, readout_hidden), nn.ReLU(), nn.Linear(readout_hidden, n_classes)
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.readout(self.core(self.embedding(tokens)))
