"""Doubly convolutional layer (Zhai et al. 2016) against an explicit unfold of its
meta-filters, its pooling over crop positions, parameter counts, and a smoke run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from experiments.doubly_cnn.model import DoubleConv2d, DoublyCNN, meta_filter_crops
from shortsci_bench.data import mirror as mirror_mod
from tests.conftest import run_cfg

needs_cifar = pytest.mark.skipif(
    mirror_mod.default_mirror() is None or not (mirror_mod.default_mirror() / "cifar10").is_dir(),  # type: ignore[operator]
    reason="no ../shared/data/cifar10 mirror",
)


def hand_crops(meta: torch.Tensor, k: int) -> torch.Tensor:
    """Crop every meta-filter by hand: rows then columns of offsets, meta-filter outermost."""
    z = meta.shape[-1]
    return torch.stack(
        [
            meta[n, :, i : i + k, j : j + k]
            for n in range(meta.shape[0])
            for i in range(z - k + 1)
            for j in range(z - k + 1)
        ]
    )


@pytest.mark.parametrize("z,k", [(4, 3), (6, 3), (5, 1), (3, 3)])
def test_crops_match_a_hand_unfold(z, k):
    meta = torch.randn(3, 2, z, z)
    assert torch.equal(meta_filter_crops(meta, k), hand_crops(meta, k))


@pytest.mark.parametrize("z,k", [(4, 3), (6, 3), (7, 5)])
def test_unpooled_layer_is_conv_with_the_stacked_crops(z, k):
    torch.manual_seed(0)
    layer = DoubleConv2d(3, 4, meta_size=z, kernel_size=k, crop_pool=1, bias=False)
    x = torch.randn(2, 3, 9, 9)
    expected = F.conv2d(x, hand_crops(layer.meta.detach(), k), padding=k // 2)
    assert layer.out_channels == 4 * (z - k + 1) ** 2
    assert torch.allclose(layer(x), expected, atol=1e-5)


def test_each_response_is_the_input_patch_times_the_meta_filter_window():
    # One pixel by hand: crop (i, j) of the meta-filter is its window at rows i..i+k-1 and
    # columns j..j+k-1, applied to the 'same'-padded input patch at that pixel.
    torch.manual_seed(1)
    z, k = 4, 3
    layer = DoubleConv2d(2, 1, meta_size=z, kernel_size=k, crop_pool=1, bias=False)
    x = torch.randn(1, 2, 10, 10)
    y = layer(x)[0].view(z - k + 1, z - k + 1, 10, 10)
    xp = F.pad(x, (1, 1, 1, 1))
    h, w = 4, 5
    patch = xp[0, :, h : h + k, w : w + k]
    for i in range(2):
        for j in range(2):
            value = sum(
                patch[c, a, b] * layer.meta[0, c, i + a, j + b]
                for c in range(2)
                for a in range(k)
                for b in range(k)
            )
            assert torch.allclose(y[i, j, h, w], value, atol=1e-5)


@pytest.mark.parametrize("pool", [2, -1])
def test_pooling_over_crop_positions(pool):
    torch.manual_seed(2)
    z, k = 6, 3  # 4 x 4 crop positions
    pooled = DoubleConv2d(3, 2, meta_size=z, kernel_size=k, crop_pool=pool)
    with torch.no_grad():
        pooled.bias.normal_()
    x = torch.randn(2, 3, 8, 8)
    full = F.conv2d(x, hand_crops(pooled.meta.detach(), k), padding=1).view(2, 2, 4, 4, 8, 8)
    if pool == 2:  # max over each 2 x 2 block of positions: 4 channels per meta-filter
        blocks = [full[:, :, a : a + 2, b : b + 2].amax(dim=(2, 3)) for a in (0, 2) for b in (0, 2)]
        expected = torch.stack(blocks, dim=2).reshape(2, 8, 8, 8)
    else:  # the whole grid: one channel per meta-filter
        expected = full.amax(dim=(2, 3))
    expected = expected + pooled.bias.view(1, -1, 1, 1)
    assert pooled.out_channels == expected.shape[1]
    assert torch.allclose(pooled(x), expected, atol=1e-5)


def test_gradient_reaches_each_meta_weight_through_its_crops():
    torch.manual_seed(3)
    layer = DoubleConv2d(1, 1, meta_size=4, kernel_size=3, crop_pool=1, bias=False)
    x = torch.randn(1, 1, 6, 6)
    layer(x).sum().backward()
    crops = hand_crops(layer.meta.detach().clone().requires_grad_(True), 3)
    meta = layer.meta.detach().clone().requires_grad_(True)
    F.conv2d(x, hand_crops(meta, 3), padding=1).sum().backward()
    assert crops.shape == (4, 1, 3, 3)
    assert torch.allclose(layer.meta.grad, meta.grad, atol=1e-5)


def test_same_width_and_same_parameters_as_the_standard_cnn():
    layers = [128, 128, "P", 128, 128, "P", 128, 128, "P"]
    cnn, dcnn = DoublyCNN(layers, conv="standard"), DoublyCNN(layers, conv="double")
    c, d = cnn.parameter_counts(), dcnn.parameter_counts()
    # 32 meta-filters of 6 x 6 per layer: 32 * 36 = 128 * 9 weights per input channel.
    assert c["model/conv_params"] == d["model/conv_params"] == 3 * 128 * 9 + 5 * 128 * 128 * 9
    assert c["model/params"] == d["model/params"]
    assert [m.out_channels for m in dcnn.conv_layers()] == [128] * 6
    assert c["model/param_ratio_equal_filters"] == 1.0
    # 16 crops of 3 x 3 from 36 weights: a quarter of the weights of 16 filters.
    assert d["model/param_ratio_equal_filters"] == pytest.approx(36 / (16 * 9))
    x = torch.randn(2, 3, 32, 32)
    assert dcnn(x).shape == cnn(x).shape == (2, 10)


def test_width_must_fit_the_meta_filters():
    with pytest.raises(ValueError):
        DoublyCNN([6, "P"], conv="double")  # 4 channels per meta-filter
    with pytest.raises(ValueError):
        DoubleConv2d(3, 2, meta_size=6, kernel_size=3, crop_pool=3)


@needs_cifar
@pytest.mark.parametrize("arm", ["cnn", "dcnn"])
def test_smoke_run_records_error_and_parameter_counts(tmp_path, arm):
    rec = run_cfg(["+experiment=doubly_cnn_cifar", "tier=smoke", f"arm={arm}"], tmp_path)
    assert rec.status == "completed"
    m = rec.metrics
    assert 0.0 <= m["test/err"] <= 1.0
    expected_ratio = 0.25 if arm == "dcnn" else 1.0
    assert m["model/param_ratio_equal_filters"] == pytest.approx(expected_ratio)
    assert m["model/conv_params"] == 3 * 8 * 9 + 8 * 8 * 9
