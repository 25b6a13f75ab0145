"""Supervised contrastive learning (SupCon) and its cross-entropy control.

Khosla, Teterwak, Wang, Sarna, Tian, Isola, Maschinot, Liu & Krishnan, "Supervised
Contrastive Learning", NeurIPS 2020 (arXiv 2004.11362), section 3.2. For a batch of 2N
augmented views with labels, anchor i, its positives P(i) (the other views of its class,
itself excluded) and A(i) = every view but i, with z unit-normalised projections:

    L_out = sum_i  -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p/tau) / sum_{a in A(i)} exp(z_i.z_a/tau) )
    L_in  = sum_i  -log( 1/|P(i)| sum_{p in P(i)} exp(z_i.z_p/tau) / sum_{a in A(i)} exp(z_i.z_a/tau) )

(`supcon_loss` averages over anchors instead of summing, as the authors' code does). By
Jensen's inequality L_in <= L_out, with equality when each anchor has one positive.

`SupConNet` is an encoder (a small CNN for CPUs, or the paper's ResNet-50 adapted to 32 x 32
inputs), a projection head (an MLP to 128-d, used only by the contrastive loss and then
dropped) and a linear classifier on the encoder's features.

Example:
    >>> net = SupConNet(SmallConvEncoder(widths=[8, 16]), feature_dim=16)
    >>> net(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PLACEMENTS = ("out", "in")


def supcon_loss(
    z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1, placement: str = "out"
) -> torch.Tensor:
    """The SupCon loss of unit vectors `z` (n, d) with `labels` (n,), mean over anchors
    that have at least one positive; `placement` "out" (L_out) or "in" (L_in)."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement={placement!r}: choose one of {PLACEMENTS}")
    n = z.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(self_mask, -math.inf)  # a in A(i): a != i
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = pos.sum(1).to(z.dtype)
    has_pos = n_pos > 0
    if placement == "out":
        per_anchor = -log_prob.masked_fill(~pos, 0.0).sum(1) / n_pos.clamp(min=1)
    else:
        # rows without a positive get finite dummies, so their (unused) gradient is not NaN
        inside = torch.where(has_pos[:, None], log_prob.masked_fill(~pos, -math.inf), 0.0)
        per_anchor = -(torch.logsumexp(inside, dim=1) - n_pos.clamp(min=1).log())
    return per_anchor[has_pos].mean()


class SmallConvEncoder(nn.Module):
    """conv3x3-BN-ReLU blocks, a 2x2 max-pool after every block but the last, then a global
    average pool: a CPU-sized stand-in for ResNet-50 (quick tier)."""

    def __init__(self, widths: list[int] = (32, 64, 128), in_channels: int = 3):
        super().__init__()
        layers, c = [], in_channels
        for k, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            if k < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c = w
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class CifarResNet50(nn.Module):
    """torchvision's ResNet-50 for 32 x 32 images (a 3x3 stride-1 stem, no max-pool, as in
    the authors' CIFAR code); outputs the 2048-d pooled features."""

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        net.fc = nn.Identity()
        self.net, self.out_dim = net, 2048

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SupConNet(nn.Module):
    """Encoder, projection head (Linear-ReLU-Linear to `projection_dim`, then L2-normalised)
    and linear classifier; `forward` classifies."""

    def __init__(
        self,
        encoder: nn.Module,
        feature_dim: int,
        projection_dim: int = 128,
        num_classes: int = 10,
    ):
        super().__init__()
        if getattr(encoder, "out_dim", feature_dim) != feature_dim:
            raise ValueError(f"feature_dim={feature_dim} but the encoder gives {encoder.out_dim}")
        self.encoder = encoder
        self.head = nn.Sequential(
            nn.Linear(feature_dim, feature_dim),
            nn.ReLU(),
            nn.Linear(feature_dim, projection_dim),
        )
        self.classifier = nn.Linear(feature_dim, num_classes)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.encoder(x)), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(x))
