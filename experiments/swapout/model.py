"""Swapout: pre-activation residual networks with per-unit stochastic masks.

Singh, Hoiem & Forsyth, "Swapout: Learning an ensemble of deep architectures", NIPS 2016
(arXiv 1605.06465). Each residual unit computes

    Y = Theta1 * X + Theta2 * F(X)

with Theta1, Theta2 independent Bernoulli tensors shaped like the unit's output, so each
output element is dropped (0), skipped (X), feed-forward (F(X)) or residual (X + F(X)).
Special cases (the paper's section 3): both masks 1 is a ResNet unit; Theta1 = Theta2 is
dropout of the unit's output; Theta1 = 1 with Theta2 one Bernoulli scalar per example is
stochastic depth. Masks are not rescaled in training; deterministic inference replaces
them by their expectations (the keep probabilities), stochastic inference samples them.

F is He et al. (2016)'s pre-activation unit, BN-ReLU-conv3x3-BN-ReLU-conv3x3; a unit that
changes width or resolution takes its shortcut X through a 1x1 convolution of the
pre-activated input.

Example::

    net = SwapoutResNet(depth=20, width=4, kind="swapout", schedule="linear")
    net.eval()
    p_det = net(x).softmax(-1)                       # masks -> expectations
    with net.stochastic_inference():
        p_stoch = sum(net(x).softmax(-1) for _ in range(30)) / 30
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("none", "swapout", "dropout", "stochastic_depth")
SCHEDULES = ("linear", "uniform")


def keep_probabilities(n_units: int, schedule: str, keep_last: float, keep: float) -> list[float]:
    """Per-unit keep probability: `linear` goes from 1 at the first unit to `keep_last` at
    the last (the paper's Linear(1, 0.5)); `uniform` is `keep` everywhere."""
    if schedule == "uniform":
        return [float(keep)] * n_units
    if schedule != "linear":
        raise ValueError(f"schedule {schedule!r}: choose one of {SCHEDULES}")
    if n_units == 1:
        return [float(keep_last)]
    return [1.0 - (i / (n_units - 1)) * (1.0 - keep_last) for i in range(n_units)]


class SwapoutUnit(nn.Module):
    """One pre-activation residual unit, Y = Theta1 * X + Theta2 * F(X).

    `kind` picks the masks: `none` (ResNet), `swapout` (independent elementwise masks,
    both with keep probability `keep`), `dropout` (one elementwise mask for both terms),
    `stochastic_depth` (Theta1 = 1, Theta2 one Bernoulli per example). Explicit masks
    passed to `forward` override the sampled ones (used to test the unit).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, kind: str, keep: float):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r}: choose one of {KINDS}")
        self.kind, self.keep = kind, float(keep)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.project = (
            nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)
            if stride != 1 or in_ch != out_ch
            else None
        )
        self.sample_in_eval = False  # stochastic inference

    def branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(X, F(X)): the shortcut and the residual branch."""
        pre = F.relu(self.bn1(x))
        shortcut = x if self.project is None else self.project(pre)
        residual = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        return shortcut, residual

    def sample_masks(self, like: torch.Tensor) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        p = self.keep
        if self.kind == "none" or p >= 1.0:
            return 1.0, 1.0
        if self.kind == "swapout":
            return _bernoulli(like, p), _bernoulli(like, p)
        if self.kind == "dropout":
            theta = _bernoulli(like, p)
            return theta, theta
        return 1.0, _bernoulli(like[:, :1, :1, :1], p)  # stochastic depth: per example

    def expected_masks(self) -> tuple[float, float]:
        if self.kind == "none":
            return 1.0, 1.0
        if self.kind == "stochastic_depth":
            return 1.0, self.keep
        return self.keep, self.keep

    def forward(
        self,
        x: torch.Tensor,
        theta1: torch.Tensor | float | None = None,
        theta2: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        shortcut, residual = self.branches(x)
        if theta1 is None or theta2 is None:
            if self.training or self.sample_in_eval:
                theta1, theta2 = self.sample_masks(residual)
            else:
                theta1, theta2 = self.expected_masks()
        return theta1 * shortcut + theta2 * residual


def _bernoulli(like: torch.Tensor, p: float) -> torch.Tensor:
    return (torch.rand_like(like) < p).to(like.dtype)


class SwapoutResNet(nn.Module):
    """CIFAR pre-activation ResNet of `depth` = 6n + 2 layers (three stages of n units at
    widths `widths` x `width`), every unit a `SwapoutUnit` of `kind` with keep
    probabilities from `schedule`.

    The paper's wide models: depth 20 or 32 at width 4 (stage widths 64, 128, 256).
    """

    def __init__(
        self,
        depth: int = 20,
        width: float = 1.0,
        widths: tuple[int, ...] | list[int] = (16, 32, 64),
        num_classes: int = 10,
        kind: str = "swapout",
        schedule: str = "linear",
        keep_last: float = 0.5,
        keep: float = 0.5,
    ):
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(
                f"depth {depth}: a CIFAR ResNet has 6n + 2 layers (8, 14, 20, 32, ...)"
            )
        n = (depth - 2) // 6
        chans = [max(1, round(w * width)) for w in widths]
        keeps = keep_probabilities(n * len(chans), schedule, keep_last, keep)
        self.stem = nn.Conv2d(3, chans[0], 3, 1, 1, bias=False)
        units, in_ch = [], chans[0]
        for s, out_ch in enumerate(chans):
            for i in range(n):
                stride = 2 if s > 0 and i == 0 else 1
                units.append(SwapoutUnit(in_ch, out_ch, stride, kind, keeps[len(units)]))
                in_ch = out_ch
        self.units = nn.ModuleList(units)
        self.bn = nn.BatchNorm2d(in_ch)
        self.head = nn.Linear(in_ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for unit in self.units:
            x = unit(x)
        x = F.relu(self.bn(x))
        return self.head(x.mean(dim=(2, 3)))

    @property
    def keeps(self) -> list[float]:
        return [u.keep for u in self.units]

    @property
    def is_stochastic(self) -> bool:
        return any(u.kind != "none" and u.keep < 1.0 for u in self.units)

    @contextmanager
    def stochastic_inference(self) -> Iterator[None]:
        """Sample the masks in eval mode too (BN keeps its running statistics)."""
        for u in self.units:
            u.sample_in_eval = True
        try:
            yield
        finally:
            for u in self.units:
                u.sample_in_eval = False
