"""Likelihood units and bounds (shortsci_bench/tasks/likelihood.py) against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from shortsci_bench.tasks.likelihood import (
    bits_per_dim,
    dequantized_nll,
    importance_weighted_nll,
    nats_from_bits_per_dim,
)


def test_bits_per_dim_of_uniform_8bit_images_is_8():
    dims = 3 * 32 * 32
    nats = dims * math.log(256)  # a uniform distribution over 256 levels per value
    assert bits_per_dim(nats, dims) == pytest.approx(8.0)
    assert nats_from_bits_per_dim(3.14, dims) == pytest.approx(3.14 * dims * math.log(2))
    assert bits_per_dim(nats_from_bits_per_dim(2.5, 784), 784) == pytest.approx(2.5)


def test_dequantized_nll_of_the_uniform_density_is_8_bits():
    # the uniform density on [0, 1]^D has log density 0: the discrete bound is D log 256
    dims = 784
    nll = dequantized_nll(torch.zeros(5), dims)
    assert torch.allclose(bits_per_dim(nll, dims), torch.full((5,), 8.0, dtype=nll.dtype))


def test_importance_weighted_bound_hand_case():
    # weights 1 and 3 (log 0 and log 3): -log mean = -log 2
    lw = torch.tensor([[0.0], [math.log(3.0)]])
    assert importance_weighted_nll(lw).item() == pytest.approx(-math.log(2.0))
    # K = 1 is the negative ELBO itself
    assert importance_weighted_nll(torch.tensor([[-5.0, -7.0]])).tolist() == [5.0, 7.0]
    # the bound tightens with K (Jensen): IW-NLL <= mean of -log w
    lw = torch.randn(50, 20, generator=torch.Generator().manual_seed(0))
    assert (importance_weighted_nll(lw) <= -lw.mean(0) + 1e-12).all()
