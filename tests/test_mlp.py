"""The Batch Normalization paper's MLP: shapes and where BN sits."""

from __future__ import annotations

import torch
from torch import nn

from shortsci_bench.models.mlp import MLP


def test_shapes_and_layers():
    m = MLP(784, [100, 100, 100], 10, "sigmoid", batchnorm=False)
    assert m(torch.rand(5, 784)).shape == (5, 10)
    assert len(m.linears) == 3 and all(isinstance(n, nn.Identity) for n in m.norms)
    assert all(lin.bias is not None for lin in m.linears)


def test_bn_before_each_nonlinearity_and_bias_dropped():
    m = MLP(784, [100, 100, 100], 10, "sigmoid", batchnorm=True)
    assert all(isinstance(n, nn.BatchNorm1d) for n in m.norms)
    assert all(lin.bias is None for lin in m.linears)  # BN's shift replaces it
    m.train()
    z = m.pre_activations(torch.rand(256, 784))
    # In training mode the sigmoid's input is normalised over the batch: mean 0, var 1.
    for layer in z:
        assert torch.allclose(layer.mean(0), torch.zeros(100), atol=1e-5)
        assert torch.allclose(
            layer.var(0, unbiased=False), torch.ones(100), atol=1e-2
        )  # eps=1e-5 in the denominator


def test_pre_activations_match_forward():
    torch.manual_seed(0)
    m = MLP(20, [8, 6], 3, "sigmoid", batchnorm=False).eval()
    x = torch.rand(4, 20)
    z = m.pre_activations(x)
    assert [t.shape[1] for t in z] == [8, 6]
    assert torch.allclose(m.head(torch.sigmoid(z[-1])), m(x))


def test_init_std_sets_small_gaussian_weights():
    torch.manual_seed(0)
    m = MLP(784, [100], 10, init_std=0.1)
    assert abs(m.linears[0].weight.std().item() - 0.1) < 0.005
