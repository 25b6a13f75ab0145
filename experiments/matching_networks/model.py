"""Matching Networks (Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra, "Matching Networks
for One Shot Learning", NIPS 2016, arXiv 1606.04080).

    y_hat = sum_i a(x_hat, x_i) y_i,    a(x_hat, x_i) = softmax_i cos(f(x_hat, S), g(x_i, S))   (eq. 1-2)

- Embedding (section 4.1, after Koch et al.): 4 blocks of [3x3 conv, 64 filters, batch norm,
  ReLU, 2x2 max-pool]; a 28x28 drawing becomes a 64-d vector. The last block has no ReLU
  unless `final_relu` (our choice, see `ConvEmbedding`): the embedding is signed, so the
  cosine of eq. 2 spans [-1, 1].
- Full Context Embeddings (`fce`, section 2.1.2 and appendix A): g is a bidirectional LSTM over
  the support embeddings with a skip connection, g(x_i, S) = h_fwd_i + h_bwd_i + g'(x_i);
  f is an attention LSTM run for K steps (`fce_steps`) on the query embedding f'(x_hat):
      h_hat_k, c_k = LSTM(f'(x_hat), [h_{k-1}, r_{k-1}], c_{k-1});  h_k = h_hat_k + f'(x_hat)
      r_{k-1} = sum_i softmax_i(h_{k-1}^T g(x_i)) g(x_i);           f(x_hat, S) = h_K
- `embedding="pixels"`: the raw drawing, flattened (the paper's "Pixels" row, cosine 1-NN).

`MatchingNetwork.nearest_neighbour` is the baselines' rule (cosine 1-NN over the support set).

    >>> net = MatchingNetwork(fce=True)
    >>> sx, sy, qx = torch.rand(2, 5, 1, 28, 28), torch.arange(5).expand(2, 5), torch.rand(2, 3, 1, 28, 28)
    >>> net(sx, sy, qx, way=5).shape          # log p(y | x_hat, S) per query
    torch.Size([2, 3, 5])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_block(in_channels: int, filters: int, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(in_channels, filters, 3, padding=1), nn.BatchNorm2d(filters)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class ConvEmbedding(nn.Module):
    """4 x [3x3 conv 64, BN, ReLU, 2x2 max-pool], no ReLU in the last: [N, 1, 28, 28] -> [N, 64].

    The last block has no ReLU, so the embedding is signed. With a final ReLU every embedding
    lies in the non-negative orthant, so every cosine of eq. 2 lies in [0, 1]: the matching
    loss can only push other classes' cosines towards 0, i.e. towards embeddings with disjoint
    supports. With 20-way episodes it does so by silencing units (their ReLU never fires, so
    they get no gradient and stay dead): the embedding collapses to a few sparse units and
    test accuracy falls as training goes on (issue 13). The parameters are unchanged
    (state-dict keys too); only the last activation is gone.
    """

    def __init__(
        self, in_channels: int = 1, filters: int = 64, blocks: int = 4, final_relu: bool = False
    ):
        super().__init__()
        layers = [
            conv_block(
                in_channels if b == 0 else filters, filters, relu=b < blocks - 1 or final_relu
            )
            for b in range(blocks)
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class SupportFCE(nn.Module):
    """g(x_i, S) = h_fwd_i + h_bwd_i + g'(x_i): a bidirectional LSTM over the support embeddings."""

    def __init__(self, dim: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, batch_first=True, bidirectional=True)

    def forward(self, support: torch.Tensor) -> torch.Tensor:  # [E, n, D] -> [E, n, D]
        out, _ = self.lstm(support)
        d = support.shape[-1]
        return support + out[..., :d] + out[..., d:]


class QueryFCE(nn.Module):
    """f(x_hat, S): the attention LSTM of appendix A.1, K read steps over g(S).

    The paper's LSTM state is [h_{k-1}, r_{k-1}]; an LSTM's gates are linear in its input and
    state, so feeding r_{k-1} with the input (input [f'(x_hat), r_{k-1}], state h_{k-1})
    computes the same gates with an ordinary LSTM cell.
    """

    def __init__(self, dim: int, steps: int):
        super().__init__()
        self.steps = steps
        self.cell = nn.LSTMCell(2 * dim, dim)

    def forward(self, query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        e, q, d = query.shape  # query [E, q, D] = f'(x_hat); support [E, n, D] = g(x_i, S)
        f0 = query.reshape(e * q, d)
        h = torch.zeros_like(f0)
        c = torch.zeros_like(f0)
        for _ in range(self.steps):
            att = torch.softmax(torch.bmm(h.view(e, q, d), support.transpose(1, 2)), dim=-1)
            r = torch.bmm(att, support).reshape(e * q, d)  # r_{k-1}, read with h_{k-1}
            h_hat, c = self.cell(torch.cat([f0, r], dim=-1), (h, c))
            h = h_hat + f0
        return h.view(e, q, d)


class MatchingNetwork(nn.Module):
    """Cosine attention over an embedded support set, with optional Full Context Embeddings."""

    def __init__(
        self,
        embedding: str = "conv",
        in_channels: int = 1,
        filters: int = 64,
        blocks: int = 4,
        fce: bool = False,
        fce_steps: int = 5,
        final_relu: bool = False,
    ):
        super().__init__()
        if embedding not in ("conv", "pixels"):
            raise ValueError(f"embedding {embedding!r}: use conv or pixels")
        if fce and embedding != "conv":
            raise ValueError("fce needs the conv embedding")
        self.embedding = embedding
        self.encoder = (
            ConvEmbedding(in_channels, filters, blocks, final_relu) if embedding == "conv" else None
        )
        self.dim = filters
        self.fce = fce
        self.support_fce = SupportFCE(filters) if fce else None
        self.query_fce = QueryFCE(filters, fce_steps) if fce else None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """g'(x) = f'(x): per-drawing embedding, [..., C, H, W] -> [..., D]."""
        lead = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:])
        z = x.flatten(1) if self.encoder is None else self.encoder(x)
        return z.reshape(*lead, z.shape[-1])

    def contextual(
        self, support: torch.Tensor, query: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(g(x_i, S), f(x_hat, S)) from the per-drawing embeddings; identities without FCE."""
        if not self.fce:
            return support, query
        g = self.support_fce(support)
        return g, self.query_fce(query, g)

    def log_probs(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, way: int
    ) -> torch.Tensor:
        """log P(y = c | x_hat, S) = log sum_{i: y_i = c} a(x_hat, x_i), from embeddings.

        support [E, n, D], support_labels [E, n], query [E, q, D] -> [E, q, way].
        """
        g, f = self.contextual(support, query)
        cos = torch.bmm(F.normalize(f, dim=-1), F.normalize(g, dim=-1).transpose(1, 2))
        log_att = torch.log_softmax(cos, dim=-1)  # [E, q, n]
        member = F.one_hot(support_labels, way).to(cos.dtype)  # [E, n, way]
        mask = torch.log(member).unsqueeze(1)  # 0 for members of class c, -inf otherwise
        return torch.logsumexp(log_att.unsqueeze(-1) + mask, dim=2)

    def forward(
        self, support_x: torch.Tensor, support_labels: torch.Tensor, query_x: torch.Tensor, way: int
    ) -> torch.Tensor:
        n = support_x.shape[1]
        z = self.embed(torch.cat([support_x, query_x], dim=1))  # one pass: BN sees the episode
        return self.log_probs(z[:, :n], support_labels, z[:, n:], way)

    @staticmethod
    def nearest_neighbour(
        support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor
    ) -> torch.Tensor:
        """Cosine 1-NN: the label of the most similar support embedding, [E, q]."""
        cos = torch.bmm(F.normalize(query, dim=-1), F.normalize(support, dim=-1).transpose(1, 2))
        return support_labels.gather(1, cos.argmax(-1))
