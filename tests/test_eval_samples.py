"""Latent-code measures in shortsci_bench.eval.samples against hand-computed cases: the best
cluster-to-label assignment (InfoGAN's permuted accuracy) and the mutual-information lower
bound on a channel whose mutual information is known in closed form."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from shortsci_bench.eval import samples


def test_best_assignment_agrees_with_brute_force():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 5, 6):
        score = rng.integers(0, 20, size=(n, n)).astype(float)
        brute = max(
            sum(score[r, c] for r, c in enumerate(p)) for p in itertools.permutations(range(n))
        )
        cols, total = samples.best_assignment(score)
        assert total == brute and sorted(cols) == list(range(n))
        assert sum(score[r, c] for r, c in enumerate(cols)) == total


def test_permuted_accuracy_ignores_the_names_of_clusters():
    labels = np.repeat(np.arange(10), 50)
    relabelled = (labels * 3 + 7) % 10  # a permutation of the digits
    assert samples.permuted_accuracy(relabelled, labels) == 1.0
    wrong = relabelled.copy()
    wrong[:25] = (wrong[:25] + 1) % 10  # half of digit 0's samples in another cluster
    assert samples.permuted_accuracy(wrong, labels) == pytest.approx(1 - 25 / 500)
    assert samples.permuted_accuracy(np.zeros(500, dtype=int), labels) == pytest.approx(0.1)


def _symmetric_channel(k: int, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (code c, observation x) pair of a k-ary symmetric channel (x = c with
    probability 1 - eps, else each other symbol), with its probability and the exact
    posterior log p(c | x) (uniform prior: the posterior is the channel)."""
    codes, xs = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
    p_x_given_c = torch.where(codes == xs, 1 - eps, eps / (k - 1)).double()
    weight = (p_x_given_c / k).reshape(-1)
    log_post = p_x_given_c.T.log()  # row x: log p(c | x) for each c
    return codes.reshape(-1), log_post[xs.reshape(-1)], weight


# eps / 9 / 10 and (1 - eps) / 10 are whole multiples of 1e-5: the joint is enumerated exactly
@pytest.mark.parametrize("eps", [0.0, 0.09, 0.45, 0.9])
def test_mi_bound_with_the_true_posterior_is_the_mutual_information(eps):
    k = 10
    codes, log_q, weight = _symmetric_channel(k, eps)
    # enumerate the joint exactly: weight each pair by repeating it in proportion
    reps = torch.round(weight * 100_000).long()
    bound = samples.categorical_mi_lower_bound(
        log_q.repeat_interleave(reps, dim=0).clamp_min(-1e9), codes.repeat_interleave(reps)
    )
    h = -sum(p * math.log(p) for p in (1 - eps, eps) if p > 0)
    mi = math.log(k) - h - eps * math.log(k - 1)  # I(c; x) of the symmetric channel
    assert bound == pytest.approx(mi, abs=1e-6)
    if eps == 0.0:
        assert bound == pytest.approx(math.log(10))


def test_mi_bound_of_a_code_the_recogniser_ignores_is_zero():
    codes = torch.arange(10).repeat(30)
    uniform = torch.full((300, 10), -math.log(10), dtype=torch.float64)
    assert samples.categorical_mi_lower_bound(uniform, codes) == pytest.approx(0.0, abs=1e-12)
