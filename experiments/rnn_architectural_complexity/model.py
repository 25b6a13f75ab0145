"""Recurrent networks with skip connections across time, for the recurrent-skip-coefficient
experiment of Zhang et al., "Architectural Complexity Measures of Recurrent Neural
Networks" (NIPS 2016, arXiv 1602.08210).

`SkipRNN`: h_t = tanh(W x_t + U h_{t-1} + V h_{t-k} + b), y = readout(h_T). With
`skip` k > 1 and `one_step` true its cell graph has cycles of (edges, delay) (1, 1) and
(1, k), so s = k (and d_r = 1); with one_step false only the delay-k edge is left
(s = k, d_r = 1/k). skip = 1 is the standard tanh RNN (s = 1). `cell_graph()` returns the
graph, so every run records the measures of the network it trains.
"""

from __future__ import annotations

import torch
from torch import nn

from experiments.rnn_architectural_complexity.measures import CellGraph, skip_rnn, standard_rnn


class SkipRNN(nn.Module):
    def __init__(
        self, input_size: int, hidden: int, output_size: int, skip: int = 1, one_step: bool = True
    ):
        super().__init__()
        if skip < 1 or (skip == 1 and not one_step):
            raise ValueError("skip >= 1; skip = 1 needs the one-step connection")
        self.hidden, self.skip, self.one_step = hidden, int(skip), bool(one_step)
        self.inp = nn.Linear(input_size, hidden)
        self.rec = nn.Linear(hidden, hidden, bias=False) if one_step else None
        self.rec_skip = nn.Linear(hidden, hidden, bias=False) if skip > 1 else None
        self.out = nn.Linear(hidden, output_size)
        # orthogonal recurrent weights, scaled so the summed recurrent input keeps its norm
        n_rec = int(one_step) + int(skip > 1)
        for lin in (self.rec, self.rec_skip):
            if lin is not None:
                nn.init.orthogonal_(lin.weight, gain=1.0 / n_rec**0.5)

    def cell_graph(self) -> CellGraph:
        return standard_rnn() if self.skip == 1 else skip_rnn(self.skip, self.one_step)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, input_size) -> (B, output_size) from the last hidden state."""
        B, T, _ = x.shape
        pre = self.inp(x)
        zeros = x.new_zeros(B, self.hidden)
        hs: list[torch.Tensor] = []
        for t in range(T):
            a = pre[:, t]
            if self.rec is not None:
                a = a + self.rec(hs[t - 1] if t >= 1 else zeros)
            if self.rec_skip is not None:
                a = a + self.rec_skip(hs[t - self.skip] if t >= self.skip else zeros)
            hs.append(torch.tanh(a))
        return self.out(hs[-1])
