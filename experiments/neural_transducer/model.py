"""The Neural Transducer (Jaitly, Sussillo, Le, Vinyals, Sutskever & Bengio, NIPS 2016,
arXiv 1511.04868), as plain `nn.Module`s.

A unidirectional LSTM encoder reads the input; its states are cut into blocks of W frames
(N = ceil(L / W) blocks). A transducer RNN emits, in each block, zero or more symbols and
then the end-of-block symbol <e>, carrying its state from block to block (section 3.1).
Per output step m in block b (section 3.2, equations 3-6):

    s_m  = f_RNN(s_{m-1}, [c_{m-1}; y_{m-1}])          the transducer LSTM stack
    c_m  = f_context(s_m, h_{(b-1)W+1 .. bW})           attention over the block only
    h'_m = f_RNN(h'_{m-1}, [c_m; s_m])                  one more LSTM layer
    p(y_m | x_1..bW, y_1..m-1) = softmax(W h'_m)

`transducer_layers` counts all LSTM layers: the last is h', the rest stack up s. With one
layer (the toy task's "1 layer ... 100 units") there is no h' and the softmax reads
[s_m; c_m]. f_context (section 3.3): `dot` (e_j = s^T h_j), `mlp` (e_j = v^T tanh(W s + U
h_j)), `lstm` (the MLP energies of the block fed to a one-layer LSTM whose output, through a
linear layer, is the attention logits: it can modulate attention within and across steps;
needs a fixed W) and `none` (the encoder state at the block's last frame, the "without
attention" models of Table 1 and Figure 3). `carry_state=False` restarts the transducer at
every block (Table 1's "no block recurrence" baseline).

With `block_size=None` the whole input is one block: the full-sequence attention
encoder-decoder (section 5: "increasing the block size, W, so that it is as large as the
input utterance makes the model similar to vanilla end-to-end models"), whose <e> is its
end-of-sequence symbol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from experiments.neural_transducer.search import (
    State,
    aligned_sequence,
    beam_search,
    best_alignment,
)

ATTENTIONS = ("none", "dot", "mlp", "lstm")


class LSTMEncoder(nn.Module):
    """A unidirectional multi-layer LSTM. Padding sits after each sequence's end, so (being
    unidirectional) it never changes the states of the real frames."""

    def __init__(self, input_dim: int, hidden: int, layers: int):
        super().__init__()
        self.lstm = nn.LSTM(input_dim, hidden, layers, batch_first=True)
        self.hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]


@dataclass
class BlockMemory:
    """Encoder states cut into blocks: `frames` (B, N, W, H), `valid` (B, N, W), `n_blocks`
    (B,), and the attention's key projection of each frame (B, N, W, A) when it uses one."""

    frames: torch.Tensor
    valid: torch.Tensor
    n_blocks: torch.Tensor
    keys: torch.Tensor | None = None

    def window(self, utt: torch.Tensor, block: torch.Tensor):
        # Finished or dead search hypotheses may point past the last block: clamp (their
        # scores are -inf or masked, so what they read does not matter).
        b = torch.minimum(block.clamp(min=0), self.n_blocks[utt] - 1)
        keys = self.keys[utt, b] if self.keys is not None else None
        return self.frames[utt, b], self.valid[utt, b], keys


def _masked_softmax(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return logits.masked_fill(~valid, float("-inf")).softmax(dim=-1)


class BlockAttention(nn.Module):
    """f_context of section 3.3 over one block of encoder states."""

    def __init__(self, kind: str, query_dim: int, key_dim: int, hidden: int, window: int | None):
        super().__init__()
        if kind not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, not {kind!r}")
        self.kind = kind
        if kind == "dot":
            # e_j = s^T h_j; a projection only when the sizes differ
            self.query = (
                nn.Identity() if query_dim == key_dim else nn.Linear(query_dim, key_dim, bias=False)
            )
        if kind in ("mlp", "lstm"):
            self.query = nn.Linear(query_dim, hidden)
            self.key = nn.Linear(key_dim, hidden, bias=False)
            self.energy = nn.Linear(hidden, 1, bias=False)
        if kind == "lstm":
            if window is None:
                raise ValueError("LSTM attention needs a fixed block size W (not block_size=None)")
            self.window = window
            self.rnn = nn.LSTMCell(window, hidden)
            self.logits = nn.Linear(hidden, window)
        self.hidden = hidden

    def project_keys(self, frames: torch.Tensor) -> torch.Tensor | None:
        return self.key(frames) if self.kind in ("mlp", "lstm") else None

    def initial_state(self, rows: int, device: torch.device) -> State:
        if self.kind != "lstm":
            return {}
        zeros = torch.zeros(rows, self.hidden, device=device)
        return {"att_h": zeros, "att_c": zeros.clone()}

    def forward(self, query, frames, valid, keys, state: State):
        if self.kind == "none":
            last = valid.long().sum(1).clamp(min=1) - 1
            alpha = F.one_hot(last, frames.shape[1]).to(frames.dtype)
        elif self.kind == "dot":
            alpha = _masked_softmax((frames * self.query(query)[:, None]).sum(-1), valid)
        else:
            energy = self.energy(torch.tanh(keys + self.query(query)[:, None])).squeeze(-1)
            if self.kind == "mlp":
                alpha = _masked_softmax(energy, valid)
            else:
                h, c = self.rnn(energy.masked_fill(~valid, 0.0), (state["att_h"], state["att_c"]))
                alpha = _masked_softmax(self.logits(h), valid)
                state = {"att_h": h, "att_c": c}
        context = torch.bmm(alpha[:, None], frames).squeeze(1)
        return context, state


class TransducerRNN(nn.Module):
    """The per-step transducer: `step(memory, state, prev, block) -> (log_probs, state)`.

    Output symbols are the `n_classes` targets plus <e> (= n_classes); the input symbols add
    a start symbol (= n_classes + 1) fed before the first output.
    """

    def __init__(
        self,
        n_classes: int,
        context_dim: int,
        hidden: int,
        layers: int,
        attention: str,
        attention_hidden: int,
        window: int | None,
        embed_dim: int,
        carry_state: bool = True,
    ):
        super().__init__()
        if layers < 1:
            raise ValueError("transducer_layers must be at least 1")
        self.n_classes, self.eob, self.start = n_classes, n_classes, n_classes + 1
        self.hidden, self.context_dim, self.carry_state = hidden, context_dim, carry_state
        self.embed = nn.Embedding(n_classes + 2, embed_dim)
        n_s = max(1, layers - 1)
        self.cells = nn.ModuleList(
            nn.LSTMCell((embed_dim + context_dim) if i == 0 else hidden, hidden) for i in range(n_s)
        )
        self.attention = BlockAttention(attention, hidden, context_dim, attention_hidden, window)
        self.output_cell = nn.LSTMCell(context_dim + hidden, hidden) if layers >= 2 else None
        self.out = nn.Linear(
            hidden if self.output_cell is not None else hidden + context_dim, n_classes + 1
        )

    def initial_state(self, utt: torch.Tensor) -> State:
        rows, dev = len(utt), utt.device
        zeros = torch.zeros(rows, len(self.cells), self.hidden, device=dev)
        state = {
            "utt": utt,
            "block": torch.full_like(utt, -1),
            "h": zeros,
            "c": zeros.clone(),
            "ctx": torch.zeros(rows, self.context_dim, device=dev),
        }
        if self.output_cell is not None:
            state["out_h"] = torch.zeros(rows, self.hidden, device=dev)
            state["out_c"] = torch.zeros(rows, self.hidden, device=dev)
        state.update(self.attention.initial_state(rows, dev))
        return state

    def step(self, memory: BlockMemory, state: State, prev: torch.Tensor, block: torch.Tensor):
        if not self.carry_state:
            # no block recurrence: every block starts afresh, as if it were the first
            fresh = block != state["block"]
            if bool(fresh.any()):
                blank = self.initial_state(state["utt"])
                state = {k: torch.where(fresh.view(-1, *[1] * (v.dim() - 1)), blank[k], v)
                         if k not in ("utt", "block") else v for k, v in state.items()}  # fmt: skip
                prev = torch.where(fresh, torch.full_like(prev, self.start), prev)
        x = torch.cat([self.embed(prev), state["ctx"]], dim=-1)
        hs, cs = [], []
        for i, cell in enumerate(self.cells):
            h, c = cell(x, (state["h"][:, i], state["c"][:, i]))
            hs.append(h)
            cs.append(c)
            x = h
        frames, valid, keys = memory.window(state["utt"], block)
        att_state = {k: v for k, v in state.items() if k.startswith("att_")}
        ctx, att_state = self.attention(x, frames, valid, keys, att_state)
        new = {"utt": state["utt"], "block": block, "h": torch.stack(hs, 1), "c": torch.stack(cs, 1),
               "ctx": ctx, **att_state}  # fmt: skip
        if self.output_cell is not None:
            oh, oc = self.output_cell(torch.cat([ctx, x], -1), (state["out_h"], state["out_c"]))
            new["out_h"], new["out_c"] = oh, oc
            feat = oh
        else:
            feat = torch.cat([x, ctx], -1)
        return F.log_softmax(self.out(feat), dim=-1), new


class NeuralTransducer(nn.Module):
    """Encoder + block transducer, with the paper's alignment search and beam search.

    `max_per_block` is the paper's M: at most M-1 symbols then <e> in a block, both when
    searching for alignments and when decoding.
    """

    needs_alignment = True

    def __init__(
        self,
        input_dim: int,
        n_classes: int,
        encoder_hidden: int = 100,
        encoder_layers: int = 1,
        transducer_hidden: int = 100,
        transducer_layers: int = 1,
        attention: str = "mlp",
        attention_hidden: int = 100,
        block_size: int | None = 1,
        embed_dim: int = 32,
        carry_state: bool = True,
        max_per_block: int = 8,
        beam: int = 4,
        max_output_len: int | None = None,
    ):
        super().__init__()
        self.kind = "transducer" if block_size else "encdec"
        self.block_size = int(block_size) if block_size else None
        self.max_per_block, self.beam, self.max_output_len = max_per_block, beam, max_output_len
        self.encoder = LSTMEncoder(input_dim, encoder_hidden, encoder_layers)
        self.transducer = TransducerRNN(
            n_classes, encoder_hidden, transducer_hidden, transducer_layers, attention,
            attention_hidden, self.block_size, embed_dim, carry_state,
        )  # fmt: skip
        self.n_classes, self.eob, self.start = n_classes, self.transducer.eob, self.transducer.start

    # --- encoder and blocks -------------------------------------------------------
    def n_blocks(self, lengths: torch.Tensor) -> torch.Tensor:
        if self.block_size is None:
            return torch.ones_like(lengths)
        return torch.div(lengths + self.block_size - 1, self.block_size, rounding_mode="floor")

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> BlockMemory:
        enc = self.encoder(x)  # (B, T, H)
        bsz, t, h = enc.shape
        w = self.block_size or t
        n = -(-t // w)
        pad = n * w - t
        valid = torch.arange(n * w, device=x.device)[None] < lengths[:, None]
        if pad:
            enc = F.pad(enc, (0, 0, 0, pad))
        frames = enc.reshape(bsz, n, w, h)
        keys = self.transducer.attention.project_keys(frames)
        return BlockMemory(frames, valid.reshape(bsz, n, w), self.n_blocks(lengths), keys)

    def _step(self, memory: BlockMemory):
        return lambda state, prev, block: self.transducer.step(memory, state, prev, block)

    def _init(self, memory: BlockMemory) -> State:
        return self.transducer.initial_state(
            torch.arange(len(memory.n_blocks), device=memory.frames.device)
        )

    # --- training: log p of aligned sequences ------------------------------------
    def aligned_logprob(
        self, memory: BlockMemory, tokens: torch.Tensor, blocks: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """log p(y_1..S+B | x) of aligned sequences (teacher forcing): (B,)."""
        state = self._init(memory)
        prev = torch.full((tokens.shape[0],), self.start, dtype=torch.long, device=tokens.device)
        total = torch.zeros(tokens.shape[0], device=tokens.device)
        for m in range(tokens.shape[1]):
            logp, state = self.transducer.step(memory, state, prev, blocks[:, m])
            total = total + logp.gather(1, tokens[:, m : m + 1]).squeeze(1) * mask[:, m]
            prev = tokens[:, m]
        return total

    def pack_aligned(
        self,
        targets: Sequence[Sequence[int]],
        counts: Sequence[Sequence[int]],
        device: torch.device,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        seqs = [aligned_sequence(t, c, self.eob) for t, c in zip(targets, counts)]
        width = max(len(s[0]) for s in seqs)
        tokens = torch.full((len(seqs), width), self.eob, dtype=torch.long)
        blocks = torch.zeros((len(seqs), width), dtype=torch.long)
        mask = torch.zeros((len(seqs), width))
        for i, (tok, blk) in enumerate(seqs):
            tokens[i, : len(tok)] = torch.tensor(tok)
            blocks[i, : len(blk)] = torch.tensor(blk)
            blocks[i, len(blk) :] = blk[-1]
            mask[i, : len(tok)] = 1.0
        return tokens.to(device), blocks.to(device), mask.to(device)

    @torch.no_grad()
    def align(
        self,
        memory: BlockMemory,
        targets: Sequence[Sequence[int]],
        generator: torch.Generator | None = None,
    ):
        """Section 3.5's approximate best alignment: (per-block counts, log p) per utterance.
        With a `generator`, footnote 6's variant: hypotheses kept in proportion to their
        probability rather than the best."""
        n_blocks = memory.n_blocks.tolist()
        if self.block_size is None:  # one block: the only alignment
            counts = [[len(t)] for t in targets]
            tok, blk, mask = self.pack_aligned(targets, counts, memory.frames.device)
            return counts, self.aligned_logprob(memory, tok, blk, mask)
        return best_alignment(self._step(memory), self._init(memory), targets, n_blocks,
                              self.max_per_block, self.eob, self.start, generator)  # fmt: skip

    # --- inference ----------------------------------------------------------------
    @torch.no_grad()
    def decode(self, memory: BlockMemory, beam: int | None = None, return_blocks: bool = False):
        """Beam search (section 3.6): symbols per utterance (and the block of each)."""
        if self.block_size is None:  # one block: <e> ends the sequence; bound it by length
            per_block = (self.max_output_len or 100) + 1
            max_len = self.max_output_len or 100
        else:
            per_block, max_len = self.max_per_block, self.max_output_len
        out = beam_search(self._step(memory), self._init(memory), memory.n_blocks,
                          beam or self.beam, per_block, self.eob, self.start, max_len,
                          return_blocks=return_blocks)  # fmt: skip
        return (out[0], out[2]) if return_blocks else out[0]
