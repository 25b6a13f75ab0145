"""Doubly convolutional networks (Zhai, Cheng, Lu & Zhang, "Doubly Convolutional Neural
Networks", NIPS 2016, arXiv 1610.09716); summary in ../shared/seeds/003_8188729303c9d2b5.txt
line 42.

A doubly convolutional layer allocates `n` meta-filters of size z x z (c_in channels each).
Its effective filters are all k x k crops of every meta-filter at stride 1, (z - k + 1)^2 per
meta-filter ("convolving the meta filters with an identity kernel"); the layer convolves the
input with all the crops stacked, then optionally max-pools each meta-filter's feature maps
over the grid of crop positions (the paper's pooling along the large filters, the authors'
`kernel_pool_size`): pooling s x s over the (z - k + 1) x (z - k + 1) grid leaves
n ((z - k + 1) / s)^2 channels, s = -1 pools the whole grid (one channel per meta-filter).

`DoublyCNN` is the authors' CIFAR shape (Shuangfei/doublecnn README, "Experiments I"):
conv blocks of `width` channels with 'same' padding, batch normalization and ReLU, 2 x 2 max
pooling followed by dropout 0.5 after each stage, global average pooling and a linear
softmax layer. `conv: double` replaces every conv layer by a doubly convolutional one with
the same number of output channels: width (s / (z - k + 1))^2 meta-filters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def meta_filter_crops(meta: torch.Tensor, k: int) -> torch.Tensor:
    """All k x k crops at stride 1 of meta-filters (n, c, z, z), as conv weights
    (n * p * p, c, k, k), p = z - k + 1, ordered (meta-filter, row offset, column offset)."""
    n, c, z, _ = meta.shape
    p = z - k + 1
    crops = meta.unfold(2, k, 1).unfold(3, k, 1)  # (n, c, p, p, k, k)
    return crops.permute(0, 2, 3, 1, 4, 5).reshape(n * p * p, c, k, k)


class DoubleConv2d(nn.Module):
    """Doubly convolutional layer: `meta_filters` meta-filters of `meta_size`, effective
    filters of `kernel_size`, max pooling `crop_pool` x `crop_pool` over crop positions
    (1: none, all crops are channels; -1: the whole grid)."""

    def __init__(
        self,
        in_channels: int,
        meta_filters: int,
        meta_size: int = 4,
        kernel_size: int = 3,
        crop_pool: int = -1,
        bias: bool = True,
    ):
        super().__init__()
        if kernel_size % 2 != 1 or meta_size < kernel_size:
            raise ValueError("kernel_size must be odd and at most meta_size ('same' padding)")
        self.k, self.z = int(kernel_size), int(meta_size)
        self.crops_per_side = self.z - self.k + 1
        self.s = self.crops_per_side if crop_pool == -1 else int(crop_pool)
        if self.crops_per_side % self.s:
            raise ValueError(f"crop_pool {crop_pool} must divide z - k + 1 = {self.crops_per_side}")
        self.in_channels, self.meta_filters = int(in_channels), int(meta_filters)
        self.out_channels = self.meta_filters * (self.crops_per_side // self.s) ** 2
        self.meta = nn.Parameter(torch.empty(self.meta_filters, in_channels, self.z, self.z))
        self.bias = nn.Parameter(torch.zeros(self.out_channels)) if bias else None
        # PyTorch's default conv init with the fan-in of one effective filter, c_in k^2,
        # so each crop starts like a k x k conv filter.
        bound = 1.0 / math.sqrt(in_channels * self.k * self.k)
        nn.init.uniform_(self.meta, -bound, bound)

    def crops(self) -> torch.Tensor:
        return meta_filter_crops(self.meta, self.k)

    def forward_unpooled(self, x: torch.Tensor) -> torch.Tensor:
        """Responses to every crop: (B, n p^2, H, W)."""
        return F.conv2d(x, self.crops(), padding=self.k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.forward_unpooled(x)
        if self.s > 1:
            b, _, h, w = y.shape
            p, s = self.crops_per_side, self.s
            # (B, n, p/s, s, p/s, s, H, W): max over each s x s block of crop positions.
            y = y.view(b, self.meta_filters, p // s, s, p // s, s, h, w).amax(dim=(3, 5))
            y = y.reshape(b, self.out_channels, h, w)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y

    def equivalent_conv_params(self) -> int:
        """Weights of a k x k conv layer with as many filters as this layer has crops."""
        return self.meta_filters * self.crops_per_side**2 * self.in_channels * self.k**2


class DoublyCNN(nn.Module):
    """`layers`: channel counts and "P" (2 x 2 max pooling + dropout), e.g. the authors'
    [128, 128, P, 128, 128, P, 128, 128, P]; `conv`: standard | double."""

    def __init__(
        self,
        layers: list,
        conv: str = "standard",
        kernel_size: int = 3,
        meta_size: int = 6,
        crop_pool: int = 2,
        dropout: float = 0.5,
        num_classes: int = 10,
        in_channels: int = 3,
    ):
        super().__init__()
        if conv not in ("standard", "double"):
            raise ValueError(f"conv must be standard or double, got {conv!r}")
        self.conv = conv
        blocks: list[nn.Module] = []
        c = in_channels
        for spec in layers:
            if spec == "P":
                blocks += [nn.MaxPool2d(2), nn.Dropout(dropout)]
                continue
            width = int(spec)
            if conv == "standard":
                layer = nn.Conv2d(c, width, kernel_size, padding=kernel_size // 2, bias=False)
            else:
                p = meta_size - kernel_size + 1
                s = p if crop_pool == -1 else crop_pool
                per_meta = (p // s) ** 2
                if width % per_meta:
                    raise ValueError(
                        f"width {width} is not a multiple of {per_meta} maps per meta-filter"
                    )
                layer = DoubleConv2d(
                    c, width // per_meta, meta_size, kernel_size, crop_pool, bias=False
                )
            blocks += [layer, nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            c = width
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))

    def conv_layers(self) -> list[nn.Module]:
        return [m for m in self.features if isinstance(m, (nn.Conv2d, DoubleConv2d))]

    def parameter_counts(self) -> dict[str, float]:
        """Conv weights, all parameters, and the ratio of conv weights to those of standard
        k x k conv layers with as many filters (for a DCNN: as many as its crops)."""
        conv = sum(sum(p.numel() for p in m.parameters()) for m in self.conv_layers())
        equivalent = sum(
            m.equivalent_conv_params() if isinstance(m, DoubleConv2d) else m.weight.numel()
            for m in self.conv_layers()
        )
        return {
            "model/params": float(sum(p.numel() for p in self.parameters())),
            "model/conv_params": float(conv),
            "model/param_ratio_equal_filters": conv / equivalent,
        }
