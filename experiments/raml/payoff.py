"""Reward augmented maximum likelihood (Norouzi, Bengio, Chen, Jaitly, Schuster, Wu &
Schuurmans, NIPS 2016, arXiv 1609.00150) as a training option of the sequence models.

Summaries: ../shared/seeds/000_52fbb3ecf381a3cb.txt line 25 and 003_8188729303c9d2b5.txt
line 34. Instead of the ground truth y*, train on y ~ q(y | y*; tau) proportional to
exp(r(y, y*) / tau) ("the exponentiated payoff distribution"), with the reward r = minus
the edit distance. Sampling is stratified: draw the number of edits e from q(e), then a
sequence uniformly among those e edits away.

- `distance="hamming"` (substitutions only): there are C(m, e) (v-1)^e sequences at
  Hamming distance e from a length-m target over v symbols, so q(e) ~ C(m, e) (v-1)^e
  exp(-scale e / tau) is exact, and the second draw (e positions, each a different symbol)
  is exactly uniform.
- `distance="edit"`: e = n_sub + n_del + n_ins edits; the number of ways to apply them,
  C(m, n_del) C(m - n_del, n_sub) (v-1)^n_sub C(m - n_del + n_ins, n_ins) v^n_ins, is
  used as the count. It over-counts (different edit lists can give one sequence, and a
  sequence can end nearer than e), the same simplification the RAML paper makes for edit
  distance. Totals are capped at `max_edits` (default: the target length).

`reward_scale` multiplies the distance: 1 is the paper's formula as written; `auto` is
1 + ln v, the scaling of the RAML authors' released sampler (as cited by public
re-implementations), which keeps the count's v^e from swamping small temperatures.

For the Neural Transducer a sampled target needs an alignment: edits are applied to the
aligned target, a substituted symbol keeps its block and an inserted one takes the block of
the symbol before it (the first block at the start).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np


class PayoffSampler:
    """Draws y ~ q(y | y*; tau) for RAML; see the module docstring."""

    def __init__(
        self,
        vocab_size: int,
        tau: float,
        distance: str = "edit",
        reward_scale: float | str = "auto",
        max_edits: int | None = None,
    ):
        if distance not in ("edit", "hamming"):
            raise ValueError(f"distance must be edit or hamming, not {distance!r}")
        if tau <= 0:
            raise ValueError("tau must be positive")
        self.v, self.tau, self.distance = int(vocab_size), float(tau), distance
        self.scale = 1.0 + math.log(self.v) if reward_scale == "auto" else float(reward_scale)
        self.max_edits = max_edits
        self._strata = lru_cache(maxsize=512)(self._strata_uncached)

    def _strata_uncached(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        """All (n_sub, n_del, n_ins) with their probabilities under q, for target length m."""
        cap = self.max_edits if self.max_edits is not None else max(m, 1)
        ops, logw = [], []
        lv1 = math.log(self.v - 1) if self.v > 1 else float("-inf")
        for e in range(cap + 1):
            for n_del in range(0, (min(e, m) if self.distance == "edit" else 0) + 1):
                for n_sub in range(0, min(e - n_del, m - n_del) + 1):
                    n_ins = e - n_del - n_sub
                    if self.distance == "hamming" and n_ins:
                        continue
                    lc = (
                        _log_comb(m, n_del)
                        + _log_comb(m - n_del, n_sub)
                        + _log_comb(m - n_del + n_ins, n_ins)
                    )
                    lc += (n_sub * lv1 if n_sub else 0.0) + n_ins * math.log(self.v)
                    ops.append((n_sub, n_del, n_ins))
                    logw.append(lc - self.scale * e / self.tau)
        logw_arr = np.array(logw)
        p = np.exp(logw_arr - logw_arr.max())
        return np.array(ops, dtype=int), p / p.sum()

    def distance_distribution(self, m: int) -> np.ndarray:
        """q(e) for e = 0..cap: the probability of drawing e edits for a length-m target."""
        ops, p = self._strata(m)
        e = ops.sum(1)
        return np.bincount(e, weights=p, minlength=int(e.max()) + 1)

    def sample(
        self,
        target: Sequence[int],
        rng: np.random.Generator,
        blocks: Sequence[int] | None = None,
    ) -> tuple[list[int], list[int]]:
        """A sampled sequence (and the block of each symbol, when `blocks` is given)."""
        m = len(target)
        ops, p = self._strata(m)
        n_sub, n_del, n_ins = ops[rng.choice(len(p), p=p)]
        blk = list(blocks) if blocks is not None else [0] * m
        picked = rng.choice(m, size=n_del + n_sub, replace=False) if n_del + n_sub else []
        deleted = set(int(i) for i in picked[:n_del])
        out: list[tuple[int, int]] = []
        substituted = set(int(i) for i in picked[n_del:])
        for i, (tok, b) in enumerate(zip(target, blk)):
            if i in deleted:
                continue
            if i in substituted:
                new = int(rng.integers(self.v - 1))
                tok = new + (new >= tok)  # uniform over the v-1 other symbols
            out.append((int(tok), int(b)))
        for _ in range(n_ins):
            pos = int(rng.integers(len(out) + 1))
            b = out[pos - 1][1] if pos > 0 else (out[0][1] if out else (blk[0] if blk else 0))
            out.insert(pos, (int(rng.integers(self.v)), b))
        return [t for t, _ in out], [b for _, b in out]


def _log_comb(n: int, k: int) -> float:
    if k < 0 or k > n:
        return float("-inf")
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
