"""Alignment search (training) and beam search (inference) for the Neural Transducer.

Jaitly et al., "A Neural Transducer", NIPS 2016 (arXiv 1511.04868):

- Section 3.5, training: "At each block, b, for each output position j, this algorithm keeps
  track of the approximate best hypothesis h(j,b) that represents the best partial alignment
  of the input sequence y~_1..j to the partial input x_1..bW ... At block b+1, all
  hypotheses h(j,b) ... are extended by at most M tokens using their recurrent states ...
  For each position j' ... the highest log probability hypothesis h(j',b+1) is kept. The
  alignment from the best hypothesis h(S,B) at the last block is used for training."
  Each extension ends with the end-of-block symbol <e> (footnote 5), so a block emits 0 to
  M-1 targets then <e> (section 3.1: "0 <= k < M").
- Section 3.6, inference: "at each output step m, we keep a heap of alternative n best
  prefixes, and extend each one by one symbol, trying out all the possible alternative
  extensions, keeping only the best n extensions. Included in the beam search is the act of
  moving the attention to the next input block. The beam search ends either when the
  sequence is longer than a pre-specified threshold, or when the end of token symbol is
  produced at the last block."

Both searches drive a `step` function and never look inside the model:
`step(state, prev_tokens, blocks) -> (log_probs (R, V), new_state)`, where `state` is a dict
of tensors whose first dimension is the hypothesis row (R). The row's utterance is whatever
the state carries (the transducer keeps it under "utt"). Searches run batched over
utterances and hypotheses: one `step` call per output step for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

State = dict[str, torch.Tensor]
StepFn = Callable[[State, torch.Tensor, torch.Tensor], tuple[torch.Tensor, State]]
NEG_INF = float("-inf")


def select_rows(state: State, idx: torch.Tensor) -> State:
    return {k: v[idx] for k, v in state.items()}


def cat_states(states: Sequence[State]) -> State:
    return {k: torch.cat([s[k] for s in states]) for k in states[0]}


def _first_best(key: torch.Tensor, score: torch.Tensor, n_keys: int) -> torch.Tensor:
    """Index of the highest-scoring entry for each key present (earliest on ties), finite only."""
    best = torch.full((n_keys,), NEG_INF, dtype=score.dtype, device=score.device)
    best.scatter_reduce_(0, key, score, reduce="amax")
    pos = torch.arange(len(key), device=key.device)
    big = len(key)
    is_best = (score == best[key]) & torch.isfinite(score)
    first = torch.full((n_keys,), big, dtype=torch.long, device=key.device)
    first.scatter_reduce_(0, key, torch.where(is_best, pos, big), reduce="amin")
    return first[first < big]


def best_alignment(
    step: StepFn,
    init_state: State,
    targets: Sequence[Sequence[int]],
    n_blocks: Sequence[int],
    max_per_block: int,
    eob: int,
    start: int,
    generator: torch.Generator | None = None,
) -> tuple[list[list[int]], torch.Tensor]:
    """The approximate best alignment of each target sequence to its input blocks.

    `init_state` has one row per utterance. Returns, per utterance, the number of target
    symbols emitted in each block (a list of length n_blocks, summing to len(target)), and
    the log probability of that aligned sequence (targets interleaved with <e>).

    `max_per_block` is the paper's M (at most M-1 targets then <e> per block); where a target
    is too long for that (S > N(M-1)) the limit is raised for that utterance to fit.
    """
    device = next(iter(init_state.values())).device
    n_utt = len(targets)
    S = torch.tensor([len(t) for t in targets], device=device)
    N = torch.tensor(list(n_blocks), device=device)
    s_max = int(S.max()) if n_utt else 0
    width = s_max + 1
    Y = torch.zeros((n_utt, width), dtype=torch.long, device=device)
    for u, t in enumerate(targets):
        if len(t):
            Y[u, : len(t)] = torch.as_tensor(list(t), device=device)
    # per-utterance M: the paper's M, or just enough to fit an unusually dense target
    M = torch.clamp(torch.div(S + N - 1, N, rounding_mode="floor") + 1, min=max_per_block)
    n_max = int(N.max())
    back = torch.full((n_max, n_utt, width), -1, dtype=torch.long, device=device)
    final = torch.full((n_utt,), NEG_INF, device=device)

    # hypotheses h(j, b-1): one row each
    utt = torch.arange(n_utt, device=device)
    j = torch.zeros(n_utt, dtype=torch.long, device=device)
    score = torch.zeros(n_utt, device=device)
    prev = torch.full((n_utt,), start, dtype=torch.long, device=device)
    state = dict(init_state)
    for b in range(n_max):
        live = (N[utt] > b).nonzero().squeeze(1)
        if len(live) == 0:
            break
        utt, j0, score, prev, state = (
            utt[live],
            j[live],
            score[live],
            prev[live],
            select_rows(state, live),
        )
        ends: list[tuple[torch.Tensor, ...]] = []
        end_states: list[State] = []
        block = torch.full_like(utt, b)
        for k in range(int(M.max())):
            logp, new_state = step(state, prev, block)
            jj = j0 + k
            m_u = M[utt]
            feasible = (S[utt] - jj) <= (N[utt] - b - 1) * (m_u - 1)
            end_score = torch.where(feasible & (k <= m_u - 1), score + logp[:, eob], NEG_INF)
            ends.append((utt, jj, end_score, torch.full_like(utt, k)))
            end_states.append(new_state)
            more = (jj < S[utt]) & (k < m_u - 1)
            if not bool(more.any()):
                break
            keep = more.nonzero().squeeze(1)
            nxt = Y[utt[keep], jj[keep]]
            score = score[keep] + logp[keep].gather(1, nxt[:, None]).squeeze(1)
            utt, j0, prev, block = utt[keep], j0[keep], nxt, block[keep]
            state = select_rows(new_state, keep)
        e_utt, e_j, e_score, e_k = (torch.cat(x) for x in zip(*ends))
        key_score = e_score
        if generator is not None:
            # footnote 6's variant: keep a hypothesis per cell in proportion to its
            # probability (Gumbel-max), not the most probable one
            u = torch.rand(e_score.shape, generator=generator).to(device).clamp(1e-12, 1 - 1e-12)
            key_score = e_score - torch.log(-torch.log(u))
        win = _first_best(e_utt * width + e_j, key_score, n_utt * width)
        utt, j, score, k = e_utt[win], e_j[win], e_score[win], e_k[win]
        back[b, utt, j] = k
        state = select_rows(cat_states(end_states), win)
        prev = torch.full_like(utt, eob)
        done = (N[utt] == b + 1) & (j == S[utt])
        final[utt[done]] = score[done]

    counts: list[list[int]] = []
    back_cpu, S_cpu, N_cpu = back.cpu(), S.tolist(), N.tolist()
    for u in range(n_utt):
        jj, per_block = S_cpu[u], [0] * N_cpu[u]
        for b in range(N_cpu[u] - 1, -1, -1):
            k = int(back_cpu[b, u, jj])
            if k < 0:
                raise RuntimeError(f"alignment search lost utterance {u} at block {b}")
            per_block[b] = k
            jj -= k
        counts.append(per_block)
    return counts, final


def aligned_sequence(
    target: Sequence[int], counts: Sequence[int], eob: int
) -> tuple[list[int], list[int]]:
    """Targets interleaved with <e> per block, and the block of each output step."""
    tokens, blocks, pos = [], [], 0
    for b, k in enumerate(counts):
        tokens += list(target[pos : pos + k]) + [eob]
        blocks += [b] * (k + 1)
        pos += k
    if pos != len(target):
        raise ValueError(f"counts {list(counts)} do not cover a target of length {len(target)}")
    return tokens, blocks


def counts_from_blocks(target_blocks: Sequence[int], n_blocks: int) -> list[int]:
    """Per-block counts from the block each target symbol is emitted in (non-decreasing)."""
    counts = [0] * n_blocks
    for b in target_blocks:
        counts[min(max(int(b), 0), n_blocks - 1)] += 1
    return counts


def beam_search(
    step: StepFn,
    init_state: State,
    n_blocks: Sequence[int] | torch.Tensor,
    beam: int,
    max_per_block: int,
    eob: int,
    start: int,
    max_len: int | None = None,
    return_blocks: bool = False,
):
    """Unconstrained beam search; returns the best symbol sequence (without <e>) per utterance
    and its log probability (and, with `return_blocks`, the block each symbol was emitted in). A block emits at most `max_per_block - 1` symbols before <e> is
    forced; `max_len` (symbols, <e> excluded) forces <e> from then on. A hypothesis ends when
    it emits <e> in its last block; an utterance's search stops when its best finished
    hypothesis scores at least as well as every live one (scores only fall)."""
    device = next(iter(init_state.values())).device
    N = torch.as_tensor(n_blocks, device=device)
    n_utt = len(N)
    rows = n_utt * beam
    slot_utt = torch.arange(n_utt, device=device).repeat_interleave(beam)
    state = select_rows(init_state, slot_utt)
    score = torch.full((n_utt, beam), NEG_INF, device=device)
    score[:, 0] = 0.0
    prev = torch.full((rows,), start, dtype=torch.long, device=device)
    block = torch.zeros(rows, dtype=torch.long, device=device)
    in_block = torch.zeros(rows, dtype=torch.long, device=device)
    length = torch.zeros(rows, dtype=torch.long, device=device)
    history = torch.zeros((rows, 0), dtype=torch.long, device=device)
    best_score = torch.full((n_utt,), NEG_INF, device=device)
    best_tokens: list[list[int]] = [[] for _ in range(n_utt)]
    while bool(torch.isfinite(score).any()):
        logp, new_state = step(state, prev, block)
        n_sym = logp.shape[1]
        force = in_block >= max_per_block - 1
        if max_len is not None:
            force |= length >= max_len
        not_eob = torch.arange(n_sym, device=device) != eob
        logp = logp.masked_fill(force[:, None] & not_eob[None], NEG_INF)
        cand = (score.reshape(rows, 1) + logp).reshape(n_utt, beam * n_sym)
        top, idx = cand.topk(beam, dim=1)  # ties: torch's order, deterministic on CPU
        parent = (torch.arange(n_utt, device=device)[:, None] * beam + idx // n_sym).reshape(rows)
        token = (idx % n_sym).reshape(rows)
        top = top.reshape(rows)
        p_block, p_in, p_len = block[parent], in_block[parent], length[parent]
        is_eob = token == eob
        finishing = is_eob & (p_block >= N[slot_utt] - 1) & torch.isfinite(top)
        history = torch.cat([history[parent], token[:, None]], dim=1)
        for r in finishing.nonzero().squeeze(1).tolist():
            u = r // beam
            if top[r] > best_score[u]:
                best_score[u] = top[r]
                best_tokens[u] = history[r].tolist()
        top = top.masked_fill(finishing, NEG_INF)
        score = top.reshape(n_utt, beam)
        # an utterance is done once nothing live can beat its best finished hypothesis
        done = score.max(dim=1).values <= best_score
        score = score.masked_fill(done[:, None], NEG_INF)
        state = select_rows(new_state, parent)
        prev = token
        block = torch.where(is_eob, p_block + 1, p_block)
        in_block = torch.where(is_eob, torch.zeros_like(p_in), p_in + 1)
        length = p_len + (~is_eob).long()
    symbols = [[t for t in path if t != eob] for path in best_tokens]
    if not return_blocks:
        return symbols, best_score
    blocks = []
    for path in best_tokens:
        seen_eob, emitted = 0, []
        for t in path:
            if t == eob:
                seen_eob += 1
            else:
                emitted.append(seen_eob)
        blocks.append(emitted)
    return symbols, best_score, blocks
