"""Professor Forcing (Lamb, Goyal, Zhang, Zhang, Courville & Bengio, NIPS 2016, arXiv
1610.09038): a recurrent generative model whose free-running behaviour (feeding back its own
samples) is trained to be indistinguishable from its teacher-forced behaviour (fed the data).

- `CharGRU`, the generator: a character-level GRU language model. `teacher_forced(x)` runs it
  on the data; `free_running(first, steps, uniforms)` feeds it its own samples, drawn by
  inverse-CDF sampling from its softmax with the given uniform numbers (so sampling is
  seeded by the caller and the same on any device). Sampled symbols are discrete: no
  gradient flows through the sampling, only through the hidden states (as in the paper,
  which backpropagates the discriminator's signal through the hidden states).
- `BehaviourDiscriminator`: the paper's discriminator, a bidirectional RNN over the
  sequence of hidden states (the "behaviour" B) followed by an MLP; it sees nothing else.
- `ProfessorForcing`: both, as `generator` and `discriminator`.
"""

from __future__ import annotations

import torch
from torch import nn


def sample_inverse_cdf(logits: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One symbol per row of `logits` (n, V): the first index whose cumulative softmax
    probability exceeds the row's uniform number in [0, 1)."""
    cdf = torch.softmax(logits.detach().float(), dim=-1).cumsum(-1)
    idx = (cdf < uniforms.unsqueeze(-1).to(cdf)).sum(-1)
    return idx.clamp_(max=logits.shape[-1] - 1)


class CharGRU(nn.Module):
    """Embedding -> one GRU layer -> linear read-out to the next symbol's logits."""

    def __init__(self, vocab_size: int, hidden: int, embed: int):
        super().__init__()
        self.vocab_size, self.hidden = int(vocab_size), int(hidden)
        self.embed = nn.Embedding(vocab_size, embed)
        self.rnn = nn.GRU(embed, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher_forced(x)[0]

    def teacher_forced(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, T, V), hidden states (B, T, H)) with the data as inputs."""
        hs, _ = self.rnn(self.embed(x))
        return self.out(hs), hs

    def free_running(
        self, first: torch.Tensor, uniforms: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Start from the symbols `first` (B,) and feed back one sample per step for
        `uniforms.shape[1]` steps. Returns (logits (B, T, V), hidden states (B, T, H),
        inputs (B, T): `first` then the model's own samples)."""
        rnn = self.rnn
        # the fused one-step GRU cell with the layer's own weights (the same equations as
        # nn.GRU, tested), far cheaper per step than calling nn.GRU on length-1 sequences
        weights = (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
        inp = first
        ht = self.embed.weight.new_zeros(len(first), self.hidden)
        logits, hs, inputs = [], [], []
        for t in range(uniforms.shape[1]):
            inputs.append(inp)
            ht = torch._VF.gru_cell(self.embed(inp), ht, *weights)
            lt = self.out(ht)
            hs.append(ht)
            logits.append(lt)
            inp = sample_inverse_cdf(lt, uniforms[:, t])
        return torch.stack(logits, 1), torch.stack(hs, 1), torch.stack(inputs, 1)


class BehaviourDiscriminator(nn.Module):
    """Bidirectional GRU over hidden-state sequences (B, T, H), its outputs averaged over
    time, then an MLP to one logit per sequence (teacher-forced = 1, free-running = 0)."""

    def __init__(self, behaviour_dim: int, hidden: int, mlp: int):
        super().__init__()
        self.rnn = nn.GRU(behaviour_dim, hidden, batch_first=True, bidirectional=True)
        self.mlp = nn.Sequential(
            nn.Linear(2 * hidden, mlp), nn.ReLU(), nn.Linear(mlp, mlp), nn.ReLU(), nn.Linear(mlp, 1)
        )

    def forward(self, behaviour: torch.Tensor) -> torch.Tensor:
        o, _ = self.rnn(behaviour)
        return self.mlp(o.mean(1)).squeeze(-1)


class ProfessorForcing(nn.Module):
    def __init__(self, vocab_size: int, hidden: int, embed: int, disc_hidden: int, disc_mlp: int):
        super().__init__()
        self.vocab_size = int(vocab_size)
        self.generator = CharGRU(vocab_size, hidden, embed)
        self.discriminator = BehaviourDiscriminator(hidden, disc_hidden, disc_mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator(x)
