"""The Neural Transducer: alignment search, beam search, the model's own properties, RAML,
and a smoke run of `transducer_addition`."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from experiments.neural_transducer.baselines import CTCRecognizer
from experiments.neural_transducer.model import NeuralTransducer
from experiments.neural_transducer.search import (
    aligned_sequence,
    beam_search,
    best_alignment,
    counts_from_blocks,
)
from experiments.raml.payoff import PayoffSampler
from shortsci_bench.tasks.sequence_metrics import edit_distance, error_counts, fold
from tests.conftest import assert_resumes_exactly, run_cfg


# --- a table-driven stand-in for the transducer's step ------------------------------------
class TableModel:
    """log p(next | utterance, block, targets emitted so far j, emitted in this block pos).

    Its future depends only on (block, j, pos), so the paper's search, which keeps one
    hypothesis per (j, block), is exact on it: brute force must agree."""

    def __init__(self, table: torch.Tensor, eob: int, start: int):
        self.table, self.eob, self.start = table, eob, start  # (U, N, S+1, M, V+1) log probs

    def init(self, n_utt: int) -> dict[str, torch.Tensor]:
        z = torch.zeros(n_utt, dtype=torch.long)
        return {"utt": torch.arange(n_utt), "j": z, "pos": z.clone(), "block": z - 1}

    def step(self, state, prev, block):
        emitted = (prev != self.eob) & (prev != self.start)
        j = state["j"] + emitted.long()
        pos = torch.where(
            block != state["block"], torch.zeros_like(j), state["pos"] + emitted.long()
        )
        u = state["utt"]
        logp = self.table[u, block.clamp(max=self.table.shape[1] - 1), j.clamp(max=self.table.shape[2] - 1),
                          pos.clamp(max=self.table.shape[3] - 1)]  # fmt: skip
        return logp, {"utt": u, "j": j, "pos": pos, "block": block}

    def score(self, u: int, target: list[int], counts: list[int]) -> float:
        tokens, blocks = aligned_sequence(target, counts, self.eob)
        state, prev, total = (
            self.init(len(self.table)),
            torch.full((len(self.table),), self.start),
            0.0,
        )
        state = {k: v[u : u + 1] for k, v in state.items()}
        prev = prev[u : u + 1]
        for tok, b in zip(tokens, blocks):
            logp, state = self.step(state, prev, torch.tensor([b]))
            total += float(logp[0, tok])
            prev = torch.tensor([tok])
        return total


def _table(probs: dict, shape, v: int) -> torch.Tensor:
    """A log-prob table, uniform except where `probs` sets a (u, b, j, pos) distribution."""
    t = torch.full((*shape, v), 1.0 / v)
    for key, dist in probs.items():
        t[key] = torch.tensor(dist)
    return t.log()


def test_alignment_hand_checked():
    # one target symbol `a` (=0), two blocks, M = 2 (at most one symbol per block); <e> = 1.
    #   [1, 0]: p(a | b0) p(e | b0, after a) p(e | b1, j=1) = 0.3 * 0.9 * 0.6 = 0.162
    #   [0, 1]: p(e | b0) p(a | b1, j=0) p(e | b1, after a) = 0.7 * 0.5 * 0.4 = 0.140
    probs = {(0, 0, 0, 0): [0.3, 0.7], (0, 0, 1, 1): [0.1, 0.9], (0, 1, 1, 0): [0.4, 0.6],
             (0, 1, 0, 0): [0.5, 0.5], (0, 1, 1, 1): [0.6, 0.4]}  # fmt: skip
    model = TableModel(_table(probs, (1, 2, 2, 2), 2), eob=1, start=2)
    counts, score = best_alignment(model.step, model.init(1), [[0]], [2], 2, eob=1, start=2)
    assert counts == [[1, 0]]
    assert float(score[0]) == pytest.approx(math.log(0.162), abs=1e-6)
    # make emitting late more likely: the other alignment wins, with its own probability
    probs[(0, 1, 0, 0)] = [0.8, 0.2]  # 0.7 * 0.8 * 0.4 = 0.224 > 0.162
    model = TableModel(_table(probs, (1, 2, 2, 2), 2), eob=1, start=2)
    counts, score = best_alignment(model.step, model.init(1), [[0]], [2], 2, eob=1, start=2)
    assert counts == [[0, 1]]
    assert float(score[0]) == pytest.approx(math.log(0.224), abs=1e-6)


def _brute_force(model: TableModel, u: int, target: list[int], n_blocks: int, m: int):
    best = (-math.inf, None)
    for counts in itertools.product(range(m), repeat=n_blocks):
        if sum(counts) == len(target):
            best = max(best, (model.score(u, target, list(counts)), list(counts)))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alignment_search_equals_brute_force_when_exact(seed):
    g = torch.Generator().manual_seed(seed)
    n_utt, n_blocks, m, v = 3, 4, 3, 4  # v = 3 symbols + <e>
    table = torch.randn(n_utt, n_blocks, 7, m, v, generator=g).mul(2).log_softmax(-1)
    model = TableModel(table, eob=3, start=4)
    targets = [[0, 1, 2, 1], [2], [1, 1, 0, 2, 0, 1]]
    blocks = [4, 3, 4]
    counts, scores = best_alignment(
        model.step, model.init(n_utt), targets, blocks, m, eob=3, start=4
    )
    for u in range(n_utt):
        brute_score, _ = _brute_force(model, u, targets[u], blocks[u], m)
        assert sum(counts[u]) == len(targets[u]) and len(counts[u]) == blocks[u]
        assert max(counts[u]) <= m - 1
        assert float(scores[u]) == pytest.approx(brute_score, abs=1e-5)
        assert model.score(u, targets[u], counts[u]) == pytest.approx(brute_score, abs=1e-5)


def test_sampled_alignment_follows_the_alignment_probabilities():
    # footnote 6's variant on the hand-checked case: [1, 0] has p 0.162, [0, 1] has 0.140,
    # so with one symbol the Gumbel-max choice picks [1, 0] about 0.162 / 0.302 of the time;
    # a fixed generator seed gives the same choice.
    probs = {(0, 0, 0, 0): [0.3, 0.7], (0, 0, 1, 1): [0.1, 0.9], (0, 1, 1, 0): [0.4, 0.6],
             (0, 1, 0, 0): [0.5, 0.5], (0, 1, 1, 1): [0.6, 0.4]}  # fmt: skip
    model = TableModel(_table(probs, (1, 2, 2, 2), 2), eob=1, start=2)
    picks = []
    for seed in range(400):
        g = torch.Generator().manual_seed(seed)
        counts, score = best_alignment(model.step, model.init(1), [[0]], [2], 2, 1, 2, g)
        picks.append(counts[0] == [1, 0])
        expected = 0.162 if counts[0] == [1, 0] else 0.140
        assert float(score[0]) == pytest.approx(math.log(expected), abs=1e-6)
    assert 0.45 < sum(picks) / len(picks) < 0.62  # 0.536 expected; 400 draws, +-3.5 sd
    again = [best_alignment(model.step, model.init(1), [[0]], [2], 2, 1, 2,
                            torch.Generator().manual_seed(s))[0] for s in range(5)]  # fmt: skip
    assert again == [best_alignment(model.step, model.init(1), [[0]], [2], 2, 1, 2,
                                    torch.Generator().manual_seed(s))[0] for s in range(5)]  # fmt: skip


def test_alignment_raises_the_limit_for_dense_targets():
    table = torch.zeros(1, 2, 6, 6, 3).log_softmax(-1)
    model = TableModel(table, eob=2, start=3)
    counts, scores = best_alignment(model.step, model.init(1), [[0, 1, 0, 1, 0]], [2], 2, 2, 3)
    assert sum(counts[0]) == 5 and torch.isfinite(scores).all()


def test_aligned_sequence_and_counts():
    tokens, blocks = aligned_sequence([5, 6, 7], [2, 0, 1], eob=9)
    assert tokens == [5, 6, 9, 9, 7, 9] and blocks == [0, 0, 0, 1, 2, 2]
    assert counts_from_blocks([0, 0, 2], 3) == [2, 0, 1]
    with pytest.raises(ValueError):
        aligned_sequence([5, 6], [1, 0], eob=9)


# --- beam search on a hand-checked case ---------------------------------------------------
class PrefixModel:
    """log p(next | prefix) from a dict; unlisted prefixes put all mass on <e>."""

    def __init__(self, dists: dict[tuple, list[float]], eob: int, start: int, v: int):
        self.dists, self.eob, self.start, self.v = dists, eob, start, v
        self.prefixes: list[tuple] = [()]

    def init(self, n: int):
        return {"pid": torch.zeros(n, dtype=torch.long)}

    def step(self, state, prev, block):
        rows = []
        for pid, p in zip(state["pid"].tolist(), prev.tolist()):
            prefix = self.prefixes[pid] + (() if p == self.start else (p,))
            self.prefixes.append(prefix)
            rows.append(len(self.prefixes) - 1)
        pids = torch.tensor(rows)
        out = []
        for pid in rows:
            dist = self.dists.get(self.prefixes[pid])
            if dist is None:
                dist = [1e-9] * self.v
                dist[self.eob] = 1.0
            out.append(torch.tensor(dist).log())
        return torch.stack(out), {"pid": pids}


def test_beam_search_hand_checked():
    a, b, e = 0, 1, 2
    dists = {(): [0.5, 0.4, 0.1], (a,): [0.4, 0.3, 0.3], (b,): [0.05, 0.05, 0.9]}
    # "b" = 0.4 * 0.9 = 0.36 is the best sequence; greedy takes a, then a, then (at the
    # 2-symbol limit, M = 3) <e>: "aa" = 0.5 * 0.4 * 1 = 0.2.
    model = PrefixModel(dists, eob=e, start=3, v=3)
    hyps, score = beam_search(
        model.step, model.init(1), [1], beam=1, max_per_block=3, eob=e, start=3
    )
    assert hyps == [[a, a]] and float(score[0]) == pytest.approx(math.log(0.2), abs=1e-5)
    hyps, score = beam_search(
        model.step, model.init(1), [1], beam=2, max_per_block=3, eob=e, start=3
    )
    assert hyps == [[b]] and float(score[0]) == pytest.approx(math.log(0.36), abs=1e-6)


def test_beam_search_moves_through_blocks():
    a, e = 0, 1
    # two blocks: <e> in block 0 moves on; `a` is likely only in block 1
    dists = {(): [0.1, 0.9], (e,): [0.8, 0.2], (e, a): [0.1, 0.9]}
    model = PrefixModel(dists, eob=e, start=2, v=2)
    hyps, score = beam_search(
        model.step, model.init(1), [2], beam=3, max_per_block=4, eob=e, start=2
    )
    assert hyps == [[a]]
    assert float(score[0]) == pytest.approx(math.log(0.9 * 0.8 * 0.9), abs=1e-5)
    _, _, blocks = beam_search(model.step, model.init(1), [2], 3, 4, e, 2, return_blocks=True)
    assert blocks == [[1]]  # `a` was emitted in the second block


# --- the model itself --------------------------------------------------------------------
def _small(attention="mlp", block_size=3, carry_state=True, layers=2) -> NeuralTransducer:
    torch.manual_seed(0)
    return NeuralTransducer(5, 4, encoder_hidden=8, transducer_hidden=8, transducer_layers=layers,
                            attention=attention, attention_hidden=6, block_size=block_size,
                            embed_dim=4, carry_state=carry_state, max_per_block=3, beam=3)  # fmt: skip


@pytest.mark.parametrize("attention", ["none", "dot", "mlp", "lstm"])
def test_alignment_score_is_the_aligned_sequence_logprob(attention):
    model = _small(attention)
    x, lengths = torch.randn(2, 8, 5), torch.tensor([8, 5])
    targets = [[0, 1, 2, 3], [3, 3]]
    memory = model.encode(x, lengths)
    counts, scores = model.align(memory, targets)
    assert [len(c) for c in counts] == [3, 2]
    tokens, blocks, mask = model.pack_aligned(targets, counts, x.device)
    assert torch.allclose(model.aligned_logprob(memory, tokens, blocks, mask), scores, atol=1e-5)
    hyps = model.decode(memory)
    assert len(hyps) == 2 and all(0 <= s < 4 for h in hyps for s in h)
    assert all(len(h) <= 2 * n for h, n in zip(hyps, [3, 2]))  # at most M-1 = 2 per block


def _step_logprobs(model, x, lengths, tokens, blocks):
    memory = model.encode(x, lengths)
    state = model.transducer.initial_state(torch.arange(1))
    prev, out = torch.tensor([model.start]), []
    for tok, b in zip(tokens, blocks):
        logp, state = model.transducer.step(memory, state, prev, torch.tensor([b]))
        out.append(logp[0])
        prev = torch.tensor([tok])
    return torch.stack(out)


def test_output_depends_only_on_input_seen_so_far():
    """Online: what the transducer emits in block b uses only frames 1..bW."""
    model = _small("lstm")
    x = torch.randn(1, 9, 5)
    later = x.clone()
    later[:, 6:] += torch.randn(1, 3, 5)  # change only block 2 (frames 7-9)
    tokens, blocks = aligned_sequence([1, 2, 3], [1, 1, 1], model.eob)
    first = _step_logprobs(model, x, torch.tensor([9]), tokens, blocks)
    second = _step_logprobs(model, later, torch.tensor([9]), tokens, blocks)
    in_early = torch.tensor(blocks) < 2
    assert torch.allclose(first[in_early], second[in_early])
    assert not torch.allclose(first[~in_early], second[~in_early])


def test_block_recurrence_switch():
    """Without block recurrence, block 1 starts the same whatever block 0 emitted."""
    x, n = torch.randn(1, 6, 5), torch.tensor([6])
    for carry, same in ((False, True), (True, False)):
        model = _small("mlp", carry_state=carry)
        one = _step_logprobs(model, x, n, *aligned_sequence([0], [1, 0], model.eob))[2]
        two = _step_logprobs(model, x, n, *aligned_sequence([2, 3], [2, 0], model.eob))[3]
        assert torch.allclose(one, two) == same


def test_encdec_is_one_block_and_lstm_attention_needs_a_window():
    model = NeuralTransducer(5, 4, 8, 1, transducer_hidden=8, attention="mlp",
                             attention_hidden=6, block_size=None, max_output_len=6)  # fmt: skip
    memory = model.encode(torch.randn(2, 9, 5), torch.tensor([9, 4]))
    assert memory.n_blocks.tolist() == [1, 1] and memory.frames.shape[2] == 9
    counts, _ = model.align(memory, [[1, 2], [3]])
    assert counts == [[2], [1]]
    assert all(len(h) <= 6 for h in model.decode(memory))
    with pytest.raises(ValueError, match="fixed block size"):
        NeuralTransducer(5, 4, attention="lstm", block_size=None)


def test_ctc_best_path_merges_repeats_and_drops_blanks():
    model = CTCRecognizer(3, 2)
    path = torch.tensor([[0, 0, 2, 0, 1, 1, 2, 1]])  # blank = 2
    model.log_probs = lambda x: torch.nn.functional.one_hot(path, 3).float().log()
    assert model.decode(torch.zeros(1, 8, 3), torch.tensor([8])) == [[0, 0, 1, 1]]
    assert model.decode(torch.zeros(1, 8, 3), torch.tensor([5])) == [[0, 0, 1]]


# --- metrics and RAML -----------------------------------------------------------------------
def test_edit_distance_and_error_counts():
    assert edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert edit_distance(list("kitten"), list("sitting")) == 3
    assert edit_distance([], [4, 5]) == 2
    assert fold([0, 1, 2], torch.tensor([5, -1, 6])) == [5, 6]
    assert error_counts([[1, 2], [3]], [[1, 2], [4, 4]]) == (2, 4, 1)


def test_raml_hamming_sampler_is_the_exponentiated_payoff_distribution():
    m, v, tau = 3, 3, 0.7
    sampler = PayoffSampler(v, tau, distance="hamming", reward_scale=1.0)
    target = [0, 1, 2]
    rng = np.random.default_rng(0)
    n = 30000
    counts: dict[tuple, int] = {}
    for _ in range(n):
        y, _ = sampler.sample(target, rng)
        counts[tuple(y)] = counts.get(tuple(y), 0) + 1
    space = list(itertools.product(range(v), repeat=m))
    weights = np.array([math.exp(-sum(a != b for a, b in zip(y, target)) / tau) for y in space])
    exact = weights / weights.sum()
    empirical = np.array([counts.get(y, 0) / n for y in space])
    assert 0.5 * np.abs(exact - empirical).sum() < 0.02  # total variation
    q = sampler.distance_distribution(m)
    assert q.sum() == pytest.approx(1.0)
    for e in range(m + 1):  # the stratum weights: C(m, e) (v-1)^e exp(-e / tau) / Z
        assert q[e] == pytest.approx(math.comb(m, e) * 2**e * math.exp(-e / tau) / weights.sum())


def test_raml_edit_sampler_sanity():
    target, blocks = [3, 1, 4, 1, 5, 9, 2, 6], [0, 0, 1, 2, 2, 2, 4, 5]
    rng = np.random.default_rng(1)
    mean_distance = {}
    for tau in (0.05, 0.6, 1.0):
        sampler = PayoffSampler(10, tau, distance="edit")
        dists = []
        for _ in range(400):
            y, b = sampler.sample(target, rng, blocks)
            assert len(y) == len(b) and b == sorted(b) and all(0 <= s < 10 for s in y)
            dists.append(edit_distance(y, target))
        q = sampler.distance_distribution(len(target))
        assert q.sum() == pytest.approx(1.0) and len(q) == len(target) + 1
        # the stratified draw applies e edits; the result is at most e away
        mean_distance[tau] = np.mean(dists)
        assert mean_distance[tau] <= (np.arange(len(q)) * q).sum() + 0.3
    assert mean_distance[0.05] == 0.0  # a cold payoff is plain maximum likelihood
    assert mean_distance[0.05] < mean_distance[0.6] < mean_distance[1.0]


# --- the experiment ------------------------------------------------------------------------
def test_transducer_addition_smoke(tmp_path):
    record = run_cfg(["+experiment=transducer_addition", "tier=smoke", "logger=none"], tmp_path)
    assert record.status == "completed" and not record.stub
    for key in (
        "test/err",
        "test/digit_err",
        "test/emitted_early",
        "val/logprob",
        "train/examples",
    ):
        assert key in record.metrics
    assert 0.0 <= record.metrics["test/err"] <= 1.0
    assert record.metrics["train/examples"] == 30 * 32
    assert [row["step"] for row in record.history] == [15.0, 30.0]


@pytest.mark.slow
def test_transducer_addition_resumes_exactly_after_sigkill(tmp_path):
    """The alignment model's parameters, the flat start and the data stream all resume."""
    smoke = ["+experiment=transducer_addition", "tier=smoke", "logger=none", "threads=1"]
    assert_resumes_exactly(smoke, tmp_path, kill_at=20)


def test_stop_at_threshold_ends_training_early(tmp_path):
    record = run_cfg(
        ["+experiment=transducer_addition", "tier=smoke", "logger=none",
         "task.stop_at={metric: val/err, value: 1.0}"],
        tmp_path,
    )  # fmt: skip
    assert [row["step"] for row in record.history] == [15.0]
    assert record.metrics["train/steps"] == 15 and record.metrics["train/examples"] == 15 * 32
