"""Whole-batch image augmentation and normalisation, on uint8 tensors where they live.

No per-item Python and no PIL: a batch of N images is cropped and flipped by one gather,
and turned into floats by one affine map (plus one matrix product for ZCA whitening).
Random draws come from the `torch.Generator` that `TrainStream` seeds from the step,
so an augmented batch is a function of (seed, step) and a resumed run sees the same one.

Example::

    g = torch.Generator().manual_seed(0)
    x = pad_crop_flip(images_uint8, g, pad=4, flip=True)   # (N, 3, 32, 32) uint8
    x = ImageNormalizer.per_channel(train_images)(x)       # float32, zero-mean, unit-var
"""

from __future__ import annotations

import torch


def pad_crop_flip(
    x: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True
) -> torch.Tensor:
    """Random translations of up to `pad` pixels (zero padding, then a crop of the original
    size) and random horizontal flips, drawn independently per image (He et al. 2016's
    CIFAR augmentation, used by Swapout). `x` is (N, C, H, W); the result has its dtype
    and device. The random draws are made on the CPU from `generator`."""
    n, c, h, w = x.shape
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    dev = x.device
    oy, ox, flips = oy.to(dev), ox.to(dev), flips.to(dev)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = oy[:, None] + torch.arange(h, device=dev)  # (N, H)
    cols = torch.arange(w, device=dev)
    # A flip reads the crop's columns right to left: fold it into the same gather.
    cols = torch.where(flips[:, None], w - 1 - cols, cols) + ox[:, None]  # (N, W)
    # One gather over flattened pixels (5x faster on a CPU than 3-D advanced indexing).
    flat = (rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]).reshape(n, 1, h * w)
    out = padded.reshape(n, c, -1).gather(2, flat.expand(n, c, h * w))
    return out.reshape(n, c, h, w)


class ImageNormalizer:
    """uint8 images -> float32: `(x - mean) / std` per channel, then optional ZCA whitening.

    `per_channel(train)` standardises with the training set's channel statistics (the
    usual ResNet input); `scaled(train, zca_eps=...)` reproduces Salimans & Kingma's
    CIFAR-10 input, `(x - 127.5) / 128` followed by ZCA whitening fitted on the training
    set with regulariser `zca_eps` (openai/weightnorm, lasagne/train.py).
    """

    def __init__(
        self,
        mean: torch.Tensor,
        std: torch.Tensor,
        zca_matrix: torch.Tensor | None = None,
        zca_mean: torch.Tensor | None = None,
    ):
        self.mean = mean.float().reshape(1, -1, 1, 1)
        self.std = std.float().reshape(1, -1, 1, 1)
        self.zca_matrix = zca_matrix
        self.zca_mean = zca_mean

    @classmethod
    def per_channel(cls, train: torch.Tensor) -> ImageNormalizer:
        x = train.float()
        return cls(x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3)))

    @classmethod
    def scaled(cls, train: torch.Tensor, zca_eps: float | None = None) -> ImageNormalizer:
        c, dev = train.shape[1], train.device
        norm = cls(torch.full((c,), 127.5, device=dev), torch.full((c,), 128.0, device=dev))
        if zca_eps is not None:
            norm.zca_mean, norm.zca_matrix = fit_zca(norm(train, whiten=False), zca_eps)
        return norm

    def to(self, device: torch.device | str) -> ImageNormalizer:
        moved = ImageNormalizer(self.mean.to(device), self.std.to(device))
        if self.zca_matrix is not None:
            moved.zca_matrix = self.zca_matrix.to(device)
            moved.zca_mean = self.zca_mean.to(device)
        return moved

    def __call__(self, x: torch.Tensor, whiten: bool = True) -> torch.Tensor:
        out = (x.float() - self.mean) / self.std
        if whiten and self.zca_matrix is not None:
            flat = out.reshape(len(out), -1) - self.zca_mean
            out = (flat @ self.zca_matrix).reshape(out.shape)
        return out


def fit_zca(x: torch.Tensor, eps: float, chunk: int = 10_000) -> tuple[torch.Tensor, torch.Tensor]:
    """ZCA whitening of flattened images: returns (mean, W) with W = U diag(1/sqrt(S+eps)) U^T
    for the covariance U S U^T of `x` (float, (N, ...)). Whitened = (x - mean) @ W."""
    flat = x.reshape(len(x), -1)
    mean = flat.mean(0, dtype=torch.float64)
    cov = torch.zeros(flat.shape[1], flat.shape[1], dtype=torch.float64, device=x.device)
    # Products in float32 (fast), sums across chunks in float64: one float32 sum over
    # 50,000 images would lose the small eigenvalues that ZCA amplifies most.
    for i in range(0, len(flat), chunk):
        part = flat[i : i + chunk].float() - mean.float()
        cov += (part.T @ part).double()
    cov /= len(flat)
    s, u = torch.linalg.eigh(cov)
    w = (u * (1.0 / torch.sqrt(s.clamp_min(0) + eps))) @ u.T
    return mean.float(), w.float()
