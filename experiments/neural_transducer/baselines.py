"""Baselines beside the Neural Transducer.

- `CTCRecognizer`: the same unidirectional LSTM encoder with a softmax over the symbols plus
  a blank at every frame, trained with torch's CTC loss (Graves et al., 2006) and decoded by
  best path (the most likely symbol per frame, repeats merged, blanks dropped).
- The full-sequence attention encoder-decoder is `NeuralTransducer(block_size=None)`: one
  block spanning the whole input, attention over all of it, <e> as end of sequence
  (Jaitly et al. 2016, section 5); configs select it by `_target_` with `block_size: null`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from experiments.neural_transducer.model import LSTMEncoder


class CTCRecognizer(nn.Module):
    kind = "ctc"
    needs_alignment = False

    def __init__(
        self, input_dim: int, n_classes: int, encoder_hidden: int = 100, encoder_layers: int = 1
    ):
        super().__init__()
        self.encoder = LSTMEncoder(input_dim, encoder_hidden, encoder_layers)
        self.out = nn.Linear(encoder_hidden, n_classes + 1)
        self.n_classes, self.blank = n_classes, n_classes

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.out(self.encoder(x)), dim=-1)  # (B, T, C)

    def nll(self, x, x_len, y, y_len) -> torch.Tensor:
        """-log p(y | x) summed over alignments, per sequence (B,)."""
        logp = self.log_probs(x).transpose(0, 1)  # (T, B, C) as ctc_loss wants
        return F.ctc_loss(
            logp, y, x_len, y_len, blank=self.blank, reduction="none", zero_infinity=True
        )

    @torch.no_grad()
    def decode(self, x: torch.Tensor, x_len: torch.Tensor) -> list[list[int]]:
        best = self.log_probs(x).argmax(-1).tolist()
        out = []
        for path, n in zip(best, x_len.tolist()):
            seq, last = [], None
            for s in path[:n]:
                if s != last and s != self.blank:
                    seq.append(s)
                last = s
            out.append(seq)
        return out
