"""Memory-Augmented Neural Network with Least Recently Used Access (Santoro, Bartunov,
Botvinick, Wierstra & Lillicrap, "Meta-Learning with Memory-Augmented Neural Networks",
ICML 2016; arXiv 1605.06065 "One-shot Learning with Memory-Augmented Neural Networks").

At step t the controller (an LSTM) sees the drawing x_t and the previous step's label y_{t-1}
(one-hot, zeros at t = 0: labels arrive one step late, section 4) and the reads r_{t-1}.
Its output h_t gives, per read head, a key k_t and a write gate alpha_t. Section 3.2:

    w^w_t = sigmoid(alpha) w^r_{t-1} + (1 - sigmoid(alpha)) w^lu_{t-1}      (last read or least used)
    M_t(i) = M_{t-1}(i) + w^w_t(i) k_t    after zeroing the least-used slot, argmin_i w^u_{t-1}(i)
    w^r_t(i) = softmax_i cos(k_t, M_t(i)),   r_t = sum_i w^r_t(i) M_t(i)
    w^u_t = gamma w^u_{t-1} + w^r_t + w^w_t
    w^lu_t(i) = 1 if w^u_t(i) is among the n smallest (n = number of reads), else 0

The class scores are a linear map of [h_t, r_t]. With several read heads, each head has its
own key and gate; all heads write (their keys, into the same memory) and the usage sums
their weights. Choices the paper leaves open (ours): keys through tanh, the gate computed from
h_t, memory initialised to 1e-6 (cosine needs non-zero rows), usage and read weights to 0.

`memory="none"` is the paper's LSTM baseline (same controller, no memory);
`StreamNearestNeighbour` is the 1-NN baseline on the same stream.

    >>> net = MANN(input_size=400, n_classes=5)
    >>> x, y = torch.rand(2, 50, 400), torch.randint(0, 5, (2, 50))
    >>> net(x, y).shape                  # class scores for every step; y_t is never seen at step t
    torch.Size([2, 50, 5])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def previous_labels(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """One-hot y_{t-1} for each step t (zeros at t = 0): the label input, offset by one step."""
    onehot = F.one_hot(y, n_classes).to(torch.get_default_dtype())
    return torch.cat([torch.zeros_like(onehot[:, :1]), onehot[:, :-1]], dim=1)


def least_used(usage: torch.Tensor, n: int) -> torch.Tensor:
    """w^lu: 1 on the n slots of smallest usage (ties to the lower index), 0 elsewhere. [B, N]."""
    idx = usage.argsort(dim=-1, stable=True)[..., :n]
    return torch.zeros_like(usage).scatter_(-1, idx, 1.0)


def lrua_write(
    memory: torch.Tensor,
    usage_prev: torch.Tensor,
    read_prev: torch.Tensor,
    least_used_prev: torch.Tensor,
    gate: torch.Tensor,
    keys: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LRUA write: returns (M_t, w^w_t).

    memory [B, N, W] = M_{t-1}; usage_prev [B, N] = w^u_{t-1}; read_prev [B, H, N] = w^r_{t-1};
    least_used_prev [B, N] = w^lu_{t-1}; gate [B, H] = alpha (pre-sigmoid); keys [B, H, W].
    """
    sigma = torch.sigmoid(gate).unsqueeze(-1)
    write = sigma * read_prev + (1 - sigma) * least_used_prev.unsqueeze(1)  # [B, H, N]
    # "Prior to writing to memory, the least used memory location ... is set to zero."
    # A fixed mask: no gradient flows through the choice of slot.
    keep = 1.0 - F.one_hot(usage_prev.argmin(dim=-1), memory.shape[1]).to(memory.dtype)
    memory = memory * keep.unsqueeze(-1) + torch.einsum("bhn,bhw->bnw", write, keys)
    return memory, write


def update_usage(
    usage: torch.Tensor, read: torch.Tensor, write: torch.Tensor, gamma: float
) -> torch.Tensor:
    """w^u_t = gamma w^u_{t-1} + w^r_t + w^w_t, the heads' weights summed. [B, N]."""
    return gamma * usage + read.sum(1) + write.sum(1)


def cosine_read(
    memory: torch.Tensor, keys: torch.Tensor, strength: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(w^r [B, H, N], r [B, H, W]): softmax over slots of cos(k, M(i)), and the weighted rows.

    `strength` [B, H] (optional, not in the paper: NTM's key strength beta) sharpens the softmax.
    """
    cos = torch.einsum(
        "bhw,bnw->bhn", F.normalize(keys, dim=-1, eps=1e-8), F.normalize(memory, dim=-1, eps=1e-8)
    )
    if strength is not None:
        cos = cos * strength.unsqueeze(-1)
    weights = torch.softmax(cos, dim=-1)
    return weights, torch.einsum("bhn,bnw->bhw", weights, memory)


class MANN(nn.Module):
    """LSTM controller (200 units) + 128 x 40 memory with LRUA writes and 4 cosine read heads."""

    def __init__(
        self,
        input_size: int = 400,
        n_classes: int = 5,
        controller_size: int = 200,
        memory: str = "lrua",
        memory_slots: int = 128,
        memory_width: int = 40,
        read_heads: int = 4,
        gamma: float = 0.95,
        key_strength: bool = False,
    ):
        super().__init__()
        if memory not in ("lrua", "none"):
            raise ValueError(f"memory {memory!r}: use lrua or none")
        self.n_classes, self.memory = n_classes, memory
        self.slots, self.width, self.heads, self.gamma = (
            memory_slots,
            memory_width,
            read_heads,
            gamma,
        )
        reads = read_heads * memory_width if memory == "lrua" else 0
        if memory == "lrua":
            self.controller = nn.LSTMCell(input_size + n_classes + reads, controller_size)
            self.key_strength = key_strength
            per_head = memory_width + 1 + int(key_strength)  # key, gate alpha[, strength beta]
            self.head_params = nn.Linear(controller_size, read_heads * per_head)
        else:  # no memory: the whole sequence through one fused LSTM
            self.controller = nn.LSTM(input_size + n_classes, controller_size, batch_first=True)
        self.output = nn.Linear(controller_size + reads, n_classes)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x [B, T, input_size], y [B, T] (true labels) -> class scores [B, T, n_classes].

        The score at step t depends on y_0 .. y_{t-1} only.
        """
        inputs = torch.cat([x, previous_labels(y, self.n_classes).to(x.dtype)], dim=-1)
        if self.memory == "none":
            h, _ = self.controller(inputs)
            return self.output(h)
        return self._forward_lrua(inputs)

    def _forward_lrua(self, inputs: torch.Tensor) -> torch.Tensor:
        b, steps, _ = inputs.shape
        dev, dt = inputs.device, inputs.dtype
        n, w, heads = self.slots, self.width, self.heads
        h = inputs.new_zeros(b, self.controller.hidden_size)
        c = torch.zeros_like(h)
        memory = torch.full((b, n, w), 1e-6, device=dev, dtype=dt)
        usage = inputs.new_zeros(b, n)
        read_w = inputs.new_zeros(b, heads, n)
        reads = inputs.new_zeros(b, heads * w)
        lu = least_used(usage, heads)
        scores = []
        for t in range(steps):
            h, c = self.controller(torch.cat([inputs[:, t], reads], dim=-1), (h, c))
            params = self.head_params(h).view(b, heads, -1)
            keys, gate = torch.tanh(params[..., :w]), params[..., w]
            strength = F.softplus(params[..., w + 1]) + 1.0 if self.key_strength else None
            memory, write_w = lrua_write(memory, usage, read_w, lu, gate, keys)
            read_w, r = cosine_read(memory, keys, strength)
            # usage only picks slots (argmin, n smallest): no gradient path, so keep it off the graph
            usage = update_usage(usage, read_w.detach(), write_w.detach(), self.gamma)
            lu = least_used(usage, heads)
            reads = r.reshape(b, heads * w)
            scores.append(self.output(torch.cat([h, reads], dim=-1)))
        return torch.stack(scores, dim=1)


class StreamNearestNeighbour(nn.Module):
    """1-NN on the stream: label x_t with the label of the most cosine-similar earlier drawing.

    Uses only what the MANN has seen by step t (x_0..x_t and y_0..y_{t-1}); at t = 0 it
    guesses class 0. Returns one-hot scores [B, T, n_classes].
    """

    def __init__(self, n_classes: int = 5):
        super().__init__()
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = F.normalize(x, dim=-1)
        cos = torch.bmm(z, z.transpose(1, 2))  # [B, T, T]
        steps = x.shape[1]
        earlier = torch.ones(steps, steps, dtype=torch.bool, device=x.device).tril(-1)
        cos = cos.masked_fill(~earlier, float("-inf"))
        nearest = cos.argmax(-1)  # row 0 is all -inf: argmax 0, overridden below
        pred = y.gather(1, nearest)
        pred[:, 0] = 0
        return F.one_hot(pred, self.n_classes).to(x.dtype)
