"""PixelCNN, from Pixel Recurrent Neural Networks (van den Oord, Kalchbrenner & Kavukcuoglu,
ICML 2016, arXiv 1601.06759), sections 3.4-3.5 and Figure 5.

The image's joint distribution is a product of conditionals in raster order, p(x) =
prod_i p(x_i | x_<i); masked convolutions make the whole product one forward pass. The
first layer is a 7x7 convolution with mask **A** (a pixel does not see itself), the rest
are residual blocks (Figure 5: ReLU, 1x1 conv 2h -> h, ReLU, 3x3 conv h -> h with mask
**B** (a pixel sees itself, i.e. the earlier layers' features at its own position), ReLU,
1x1 conv h -> 2h, added to the input), then "a couple of layers consisting of a ReLU and
a 1x1 convolution" (32 feature maps for MNIST, 1024 for CIFAR-10) and the output: one
logit per pixel for binary MNIST, a 256-way softmax per colour channel for CIFAR-10.

For colour images the masks also order the channels R, G, B within a pixel (section
3.4): feature maps are split in three groups; with mask A group c sees input channels
< c at the centre, with mask B groups <= c.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def causal_mask(kernel: int, in_ch: int, out_ch: int, mask_type: str, colors: int) -> torch.Tensor:
    """(out_ch, in_ch, k, k) mask: 1 above the centre row and left of the centre; at the
    centre, by channel group (R < G < B): type A strictly earlier groups, B up to its own.
    With `colors=1` the centre is 0 for A and 1 for B."""
    mask = torch.zeros(out_ch, in_ch, kernel, kernel)
    c = kernel // 2
    mask[:, :, :c, :] = 1
    mask[:, :, c, :c] = 1
    out_group = torch.arange(out_ch) * colors // out_ch  # group of each output map
    in_group = torch.arange(in_ch) * colors // in_ch
    if mask_type == "A":
        centre = in_group[None, :] < out_group[:, None]
    elif mask_type == "B":
        centre = in_group[None, :] <= out_group[:, None]
    else:
        raise ValueError(f"mask type {mask_type!r}: use A or B")
    mask[:, :, c, c] = centre.float()
    return mask


class MaskedConv2d(nn.Conv2d):
    """A 'same' convolution whose kernel is multiplied by a causal mask (A or B)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, mask_type: str, colors: int = 1):
        super().__init__(in_ch, out_ch, kernel, padding=kernel // 2)
        self.register_buffer("mask", causal_mask(kernel, in_ch, out_ch, mask_type, colors))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class ResidualBlock(nn.Module):
    """Figure 5's PixelCNN residual block on 2h feature maps."""

    def __init__(self, h: int, colors: int = 1):
        super().__init__()
        self.down = MaskedConv2d(2 * h, h, 1, "B", colors)
        self.conv = MaskedConv2d(h, h, 3, "B", colors)
        self.up = MaskedConv2d(h, 2 * h, 1, "B", colors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(F.relu(x))
        y = self.conv(F.relu(y))
        return x + self.up(F.relu(y))


class PixelCNN(nn.Module):
    """`layers` masked layers in all: the 7x7 mask-A convolution, then `layers - 1`
    residual blocks, on `2h` feature maps; then `out_layers` x (ReLU, 1x1 conv to
    `out_features`) and the output layer. `colors=1, levels=2`: binary images, one logit per
    pixel (Bernoulli). `colors=3, levels=256`: a 256-way softmax per colour channel.
    `nll(x)` is the exact negative log-likelihood in nats per image."""

    def __init__(self, layers: int = 15, h: int = 16, out_features: int = 32, out_layers: int = 2,
                 colors: int = 1, levels: int = 2):  # fmt: skip
        super().__init__()
        if layers < 1:
            raise ValueError("layers >= 1: the first mask-A convolution counts as one")
        self.colors, self.levels = colors, levels
        self.first = MaskedConv2d(colors, 2 * h, 7, "A", colors)
        self.blocks = nn.ModuleList(ResidualBlock(h, colors) for _ in range(layers - 1))
        heads, width = [], 2 * h
        for _ in range(out_layers):
            heads.append(MaskedConv2d(width, out_features, 1, "B", colors))
            width = out_features
        self.heads = nn.ModuleList(heads)
        per_color = 1 if levels == 2 else levels
        self.out = MaskedConv2d(width, colors * per_color, 1, "B", colors)

    def scale_input(self, x: torch.Tensor) -> torch.Tensor:
        # "input scaling and centering": {0, 1} or 0..255 -> [-1, 1]
        return x * (2.0 / (self.levels - 1)) - 1.0

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) integer-valued images -> logits: (N, 1, H, W) for binary data, else
        (N, levels, C, H, W)."""
        y = self.first(self.scale_input(x))
        for block in self.blocks:
            y = block(y)
        for head in self.heads:
            y = head(F.relu(y))
        y = self.out(F.relu(y))
        if self.levels == 2:
            return y
        n, _, hgt, wid = y.shape
        # output maps are grouped by colour (R maps first), matching the masks' groups
        return y.view(n, self.colors, self.levels, hgt, wid).transpose(1, 2)

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """Exact NLL of each image in nats, (N,)."""
        logits = self.logits(x)
        if self.levels == 2:
            per_pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        else:
            per_pixel = F.cross_entropy(logits, x.long(), reduction="none")
        return per_pixel.flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, shape: tuple[int, int, int]) -> torch.Tensor:
        """Ancestral sampling, one pixel (and channel) at a time, in raster order."""
        x = torch.zeros(n, *shape, device=self.out.weight.device)
        for i in range(shape[1]):
            for j in range(shape[2]):
                for c in range(shape[0]):
                    logits = self.logits(x)
                    if self.levels == 2:
                        x[:, c, i, j] = torch.bernoulli(torch.sigmoid(logits[:, c, i, j]))
                    else:
                        probs = logits[:, :, c, i, j].softmax(-1)
                        x[:, c, i, j] = torch.multinomial(probs, 1).squeeze(-1).float()
        return x


def n_parameters(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())
