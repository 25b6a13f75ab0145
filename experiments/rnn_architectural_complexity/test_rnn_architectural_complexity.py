"""rnn_skip: the complexity measures on hand-drawn cell graphs (closed forms against the
unfolded graph), the network's connections against its cell graph, the task's data, and
a smoke run end to end."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from experiments.rnn_architectural_complexity.data import bit_memory_batch
from experiments.rnn_architectural_complexity.measures import (
    CellGraph,
    cycle_recurrent_depth,
    cycle_skip_coefficient,
    deep_transition_rnn,
    feedforward_depth,
    measures,
    skip_rnn,
    stacked_rnn,
    standard_rnn,
    unfolded_recurrent_depth,
    unfolded_skip_coefficient,
)
from experiments.rnn_architectural_complexity.model import SkipRNN
from shortsci_bench.claims.schema import load_paper
from tests.conftest import REPO, run_cfg

# (graph, d_r, d_f, s), each worked out by hand from the drawing:
HAND = [
    # x -> h -> y, h -> h (1): the longest path x_i -> h_i ... h_{i+n} -> y is n + 2
    (standard_rnn(), 1, 2, 1),
    # two stacked layers: x -> h1 -> h2 -> y adds one edge per step
    (stacked_rnn(2), 1, 3, 1),
    (stacked_rnn(3), 1, 4, 1),
    # h -> m (0) -> h (1): a cycle of 2 edges per time step, so d_r = 2 and the shortest
    # path across n steps has 2n edges (s = 1/2); x_i -> h ... h_{i+n} -> y has 2n + 2
    # edges, so d_f = 2n + 2 - 2n = 2
    (deep_transition_rnn(2), 2, 2, Fraction(1, 2)),
    (deep_transition_rnn(3), 3, 2, Fraction(1, 3)),
    # h -> h with delays 1 and k: cycles (1 edge, delay 1) and (1 edge, delay k)
    (skip_rnn(5), 1, 2, 5),
    (skip_rnn(10), 1, 2, 10),
    # only the delay-k edge: one edge per k steps
    (skip_rnn(4, keep_one_step=False), Fraction(1, 4), 2, 4),
]


@pytest.mark.parametrize("g,dr,df,s", HAND)
def test_measures_of_hand_drawn_graphs(g, dr, df, s):
    assert cycle_recurrent_depth(g) == dr
    assert cycle_skip_coefficient(g) == s
    assert feedforward_depth(g) == df
    assert measures(g) == {
        "recurrent_depth": float(dr),
        "feedforward_depth": float(df),
        "skip_coefficient": float(s),
    }


@pytest.mark.parametrize("g,dr,df,s", HAND)
def test_unfolded_limits_approach_the_cycle_formulas(g, dr, df, s):
    """D(n)/n -> d_r and n/d(n) -> s on the unfolded graph (gaps shrink like 1/n)."""
    for n in (120, 240):
        assert abs(unfolded_recurrent_depth(g, n) - float(dr)) <= 4 / n + 1e-12
        assert abs(unfolded_skip_coefficient(g, n) - float(s)) <= float(s) ** 2 * 8 / n + 1e-12
    # the supremum in d_f is reached early: a longer horizon does not change it
    assert feedforward_depth(g, 30) == feedforward_depth(g, 120)


def test_zero_delay_cycle_is_rejected():
    g = CellGraph(("x", "h", "m", "y"), (("x", "h", 0), ("h", "m", 0), ("m", "h", 0), ("h", "y", 0)), ("x",), ("y",))  # fmt: skip
    with pytest.raises(ValueError, match="zero total delay"):
        g.check()


def test_network_connections_match_its_cell_graph():
    """In SkipRNN(k) the last output depends on x_{T-1-k} through one recurrent edge: with
    the one-step weights zeroed, only inputs at T-1, T-1-k, T-1-2k, ... reach the output."""
    torch.manual_seed(0)
    k, T = 4, 13
    net = SkipRNN(2, 8, 1, skip=k)
    assert measures(net.cell_graph())["skip_coefficient"] == k
    with torch.no_grad():
        net.rec.weight.zero_()
    x = torch.randn(1, T, 2, requires_grad=True)
    net(x).sum().backward()
    reached = {t for t in range(T) if x.grad[0, t].abs().sum() > 0}
    assert reached == {T - 1 - j * k for j in range(T) if T - 1 - j * k >= 0}
    assert measures(SkipRNN(2, 8, 1, skip=1).cell_graph())["skip_coefficient"] == 1


def test_bit_memory_data():
    x, y = bit_memory_batch(64, 30, torch.Generator().manual_seed(0))
    assert x.shape == (64, 30, 2) and y.shape == (64, 1)
    assert torch.equal((x[:, 0, 0] > 0).float(), y[:, 0])  # the bit is the first input
    assert torch.all(x[:, 1:, 0] == 0)  # and is never repeated
    assert 0.3 < float(y.mean()) < 0.7


def test_smoke_run(tmp_path):
    rec = run_cfg(["+experiment=rnn_skip", "tier=smoke", "arm=skip10"], tmp_path)
    assert rec.status == "completed"
    m = rec.metrics
    assert m["measures/skip_coefficient"] == 10 and m["measures/recurrent_depth"] == 1
    assert 0.0 <= m["test/acc"] <= 1.0 and len(rec.history) == 3


def test_claims_name_this_experiment():
    paper = load_paper(REPO / "experiments" / "rnn_architectural_complexity" / "claims.yaml")
    active = [c for c in paper.claims if c.status == "active"]
    assert active and all(c.experiment == "rnn_skip" for c in active)
