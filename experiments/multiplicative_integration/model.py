"""Multiplicative integration (MI) against the additive update, in an RNN and an LSTM.

Wu, Zhang, Zhang, Bengio & Salakhutdinov, "On Multiplicative Integration with Recurrent
Neural Networks", NIPS 2016 (arXiv 1606.06630). Where an RNN adds its two streams,
`phi(W x + U h + b)`, MI uses the general form (the paper's equation 3 family)

    phi(alpha * Wx * Uh + beta1 * Uh + beta2 * Wx + b)

with `*` elementwise and alpha, beta1, beta2 learned gating vectors: 3 extra vectors per
pre-activation, against the H^2 of U. An MI-LSTM applies it to the 4H pre-activations of
its gates. Inputs are character ids, so `Wx` is a column of W: an embedding lookup.

Initial alpha, beta1, beta2 (1, 1, 1) are ours: the paper's values are not in our sources.

Example:
    >>> lm = CharLanguageModel(cell="mi_rnn", vocab_size=10, hidden=8)
    >>> lm(torch.randint(0, 10, (2, 5))).shape
    torch.Size([2, 5, 10])
"""

from __future__ import annotations

import torch
from torch import nn


class RecurrentCore(nn.Module):
    """W (an embedding: W x for a character id x), U, b, and, for MI, alpha, beta1, beta2
    over `gates * hidden` pre-activations; subclasses say how a state is updated."""

    gates = 1

    def __init__(
        self,
        vocab_size: int,
        hidden: int,
        multiplicative: bool,
        alpha_init: float = 1.0,
        beta1_init: float = 1.0,
        beta2_init: float = 1.0,
    ):
        super().__init__()
        self.hidden, self.multiplicative = hidden, multiplicative
        width = self.gates * hidden
        self.W = nn.Embedding(vocab_size, width)
        self.U = nn.Linear(hidden, width, bias=False)
        self.b = nn.Parameter(torch.zeros(width))
        bound = hidden**-0.5  # torch's own RNN init, for W, U alike
        nn.init.uniform_(self.W.weight, -bound, bound)
        nn.init.uniform_(self.U.weight, -bound, bound)
        if multiplicative:
            self.alpha = nn.Parameter(torch.full((width,), float(alpha_init)))
            self.beta1 = nn.Parameter(torch.full((width,), float(beta1_init)))
            self.beta2 = nn.Parameter(torch.full((width,), float(beta2_init)))

    def integrate(self, wx: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The pre-activation from W x (already looked up) and the previous h."""
        uh = self.U(h)
        if self.multiplicative:
            return self.alpha * wx * uh + self.beta1 * uh + self.beta2 * wx + self.b
        return wx + uh + self.b

    def initial_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def step(self, wx: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """One time step: the new state, whose first entry is the output h."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Ids (batch, T) -> hidden outputs (batch, T, H) and the list of h_t (for probes)."""
        wx_all = self.W(x)  # every W x_t at once
        state = self.initial_state(x.shape[0])
        hs = []
        for t in range(x.shape[1]):
            state = self.step(wx_all[:, t], state)
            hs.append(state[0])
        return torch.stack(hs, 1), hs


class TanhRNN(RecurrentCore):
    """h_t = tanh(W x_t + U h_t-1 + b), or its MI form."""

    def initial_state(self, batch):
        return (self.W.weight.new_zeros(batch, self.hidden),)

    def step(self, wx, state):
        return (torch.tanh(self.integrate(wx, state[0])),)


class LSTM(RecurrentCore):
    """An LSTM whose 4 gate pre-activations (input, forget, cell, output) are additive
    `W x + U h + b` or MI; forget-gate bias starts at 1 (ours)."""

    gates = 4

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        with torch.no_grad():
            self.b[self.hidden : 2 * self.hidden].fill_(1.0)

    def initial_state(self, batch):
        zeros = self.W.weight.new_zeros(batch, self.hidden)
        return zeros, zeros

    def step(self, wx, state):
        h, c = state
        i, f, g, o = self.integrate(wx, h).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


CELLS: dict[str, tuple[type[RecurrentCore], bool]] = {
    "rnn": (TanhRNN, False),
    "mi_rnn": (TanhRNN, True),
    "lstm": (LSTM, False),
    "mi_lstm": (LSTM, True),
}


class CharLanguageModel(nn.Module):
    """Character ids -> next-character logits: a recurrent core and a linear softmax layer."""

    def __init__(
        self,
        cell: str = "mi_rnn",
        vocab_size: int = 93,
        hidden: int = 128,
        alpha_init: float = 1.0,
        beta1_init: float = 1.0,
        beta2_init: float = 1.0,
    ):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell={cell!r}: choose one of {sorted(CELLS)}")
        core_cls, multiplicative = CELLS[cell]
        self.cell, self.vocab_size = cell, vocab_size
        self.core = core_cls(vocab_size, hidden, multiplicative, alpha_init, beta1_init, beta2_init)
        self.out = nn.Linear(hidden, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.core(x)[0])

    def with_states(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the list of hidden outputs h_t (each part of the graph)."""
        h, hs = self.core(x)
        return self.out(h), hs

    def mi_parameter_count(self) -> int:
        """Parameters MI adds over the additive cell of the same size (alpha, beta1, beta2)."""
        core = self.core
        return sum(
            getattr(core, n).numel() for n in ("alpha", "beta1", "beta2") if hasattr(core, n)
        )
