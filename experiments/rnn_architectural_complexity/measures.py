"""The architectural complexity measures of Zhang et al., "Architectural Complexity
Measures of Recurrent Neural Networks" (NIPS 2016, arXiv 1602.08210).

An RNN is a cyclic graph: nodes (input, hidden, output units or layers) and edges
(u, v, delay): the edge carries u at time t to v at time t + delay. Unfolding gives the
DAG with nodes (v, t). With n the time span:

- recurrent depth d_r = lim_n D(n) / n, D(n) = the longest path from a node at time i to a
  node at time i + n; equal to max over directed cycles of (number of edges) / (sum of
  delays);
- feedforward depth d_f = sup_{i, n} (D*(n) - n d_r), D*(n) = the longest path from an
  input node at time i to an output node at time i + n;
- recurrent skip coefficient s = 1 / lim_n (d(n) / n), d(n) = the shortest path from a
  node at time i to a node at time i + n; equal to max over directed cycles of
  (sum of delays) / (number of edges).

`cycle_*` compute the closed forms from the simple cycles (a ratio of sums over a cycle
is at most the largest ratio of its simple cycles); `unfolded_*` compute D(n), D*(n) and
d(n) by dynamic programming over the unfolded graph, so the tests can check the limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import networkx as nx

NEG = float("-inf")


@dataclass(frozen=True)
class CellGraph:
    nodes: tuple[str, ...]
    edges: tuple[tuple[str, str, int], ...]  # (u, v, delay >= 0)
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def check(self) -> None:
        names = set(self.nodes)
        for u, v, d in self.edges:
            if u not in names or v not in names or d < 0:
                raise ValueError(f"bad edge {(u, v, d)}")
        for cyc in self.simple_cycles():
            if sum(d for *_, d in cyc) == 0:
                raise ValueError(f"cycle with zero total delay: {cyc}")

    def simple_cycles(self) -> list[list[tuple[str, str, int]]]:
        """Simple cycles as edge lists (parallel edges with different delays counted)."""
        g = nx.MultiDiGraph()
        g.add_nodes_from(self.nodes)
        for u, v, d in self.edges:
            g.add_edge(u, v, delay=d)
        out = []
        for cyc in nx.simple_cycles(nx.DiGraph(g)):
            # every choice of parallel edge along the node cycle
            choices = [[]]
            for a, b in zip(cyc, cyc[1:] + cyc[:1]):
                delays = [e["delay"] for e in g.get_edge_data(a, b).values()]
                choices = [c + [(a, b, d)] for c in choices for d in delays]
            out += choices
        return out


def cycle_recurrent_depth(g: CellGraph) -> Fraction:
    return max(Fraction(len(c), sum(d for *_, d in c)) for c in g.simple_cycles())


def cycle_skip_coefficient(g: CellGraph) -> Fraction:
    return max(Fraction(sum(d for *_, d in c), len(c)) for c in g.simple_cycles())


def _longest_within_step(g: CellGraph, start: dict[str, float], shortest: bool) -> dict:
    """Relax the delay-0 edges (a DAG within one time step) from `start` values."""
    zero = nx.DiGraph([(u, v) for u, v, d in g.edges if d == 0])
    zero.add_nodes_from(g.nodes)
    val = dict(start)
    for u in nx.topological_sort(zero):
        for _, v in zero.out_edges(u):
            cand = val[u] + 1
            if shortest:
                val[v] = min(val[v], cand)
            else:
                val[v] = max(val[v], cand)
    return val


def unfolded_paths(g: CellGraph, n_max: int, sources, shortest: bool = False) -> list[dict]:
    """best[t][v] = the longest (or shortest) path length from any of `sources` at time 0
    to (v, t), for t = 0..n_max (-inf / +inf where unreachable)."""
    bad = float("inf") if shortest else NEG
    pick = min if shortest else max
    best: list[dict[str, float]] = []
    for t in range(n_max + 1):
        start = {v: bad for v in g.nodes}
        if t == 0:
            for s in sources:
                start[s] = 0.0
        for u, v, d in g.edges:
            if d > 0 and t - d >= 0 and best[t - d][u] != bad:
                start[v] = pick(start[v], best[t - d][u] + 1)
        best.append(_longest_within_step(g, start, shortest))
    return best


def unfolded_recurrent_depth(g: CellGraph, n: int) -> float:
    """max over start nodes of D(n) / n (all nodes at time 0 as sources, longest path)."""
    best = unfolded_paths(g, n, g.nodes)
    return max(best[n].values()) / n


def unfolded_skip_coefficient(g: CellGraph, n: int) -> float:
    """n / d(n): d(n) the shortest path from a node at time 0 to any node at time n."""
    best = [unfolded_paths(g, n, [s], shortest=True)[n] for s in g.nodes]
    d = min(min(b.values()) for b in best)
    return n / d


def feedforward_depth(g: CellGraph, n_max: int = 60) -> Fraction:
    """max over n <= n_max of D*(n) - n d_r (the supremum; tests check it is stable)."""
    dr = cycle_recurrent_depth(g)
    best = unfolded_paths(g, n_max, g.inputs)
    vals = []
    for n in range(n_max + 1):
        reach = [best[n][o] for o in g.outputs if best[n][o] != NEG]
        if reach:
            vals.append(Fraction(int(max(reach))) - n * dr)
    return max(vals)


def measures(g: CellGraph, n_max: int = 60) -> dict[str, float]:
    g.check()
    return {
        "recurrent_depth": float(cycle_recurrent_depth(g)),
        "feedforward_depth": float(feedforward_depth(g, n_max)),
        "skip_coefficient": float(cycle_skip_coefficient(g)),
    }


# --- hand-drawn cell graphs -----------------------------------------------------------
def standard_rnn() -> CellGraph:
    """x -> h -> y, h -> h with delay 1: d_r = 1, d_f = 2, s = 1."""
    return CellGraph(("x", "h", "y"), (("x", "h", 0), ("h", "h", 1), ("h", "y", 0)), ("x",), ("y",))


def stacked_rnn(layers: int = 2) -> CellGraph:
    """x -> h1 -> ... -> hL -> y, each h_l -> h_l with delay 1: d_r = 1, d_f = L + 1, s = 1."""
    hs = tuple(f"h{i}" for i in range(1, layers + 1))
    edges = [("x", hs[0], 0), (hs[-1], "y", 0)]
    edges += [(a, b, 0) for a, b in zip(hs, hs[1:])] + [(h, h, 1) for h in hs]
    return CellGraph(("x", *hs, "y"), tuple(edges), ("x",), ("y",))


def deep_transition_rnn(depth: int = 2) -> CellGraph:
    """The recurrent transition passes through `depth` layers per step (h -> m1 -> ... -> h,
    the last edge delayed): d_r = depth."""
    ms = tuple(f"m{i}" for i in range(1, depth))
    chain = ("h", *ms)
    edges = [("x", "h", 0), ("h", "y", 0)]
    edges += [(a, b, 0) for a, b in zip(chain, chain[1:])] + [(chain[-1], "h", 1)]
    return CellGraph(("x", "h", *ms, "y"), tuple(edges), ("x",), ("y",))


def skip_rnn(k: int, keep_one_step: bool = True) -> CellGraph:
    """h -> h with delay k added (keep_one_step) or instead of delay 1: s = k, d_r = 1 with
    the one-step edge, 1/k without it."""
    edges = [("x", "h", 0), ("h", "y", 0), ("h", "h", k)]
    if keep_one_step:
        edges.append(("h", "h", 1))
    return CellGraph(("x", "h", "y"), tuple(edges), ("x",), ("y",))
