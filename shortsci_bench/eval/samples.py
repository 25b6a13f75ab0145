"""Sample-quality measures for generative models, shared by the GAN experiments.

- `sliced_wasserstein`: the sliced Wasserstein-1 distance between two equal-sized samples
  (1-D W1 by sorting, averaged over pinned random directions): a quality measure that
  needs no trained network, for low-dimensional data such as the 2-D mixture;
- `ring_modes` / `mode_coverage` / `near_modes`: modes of a ring of Gaussians (Metz et al.
  2016's 8-mode toy), how many of them a sample covers, and how many points lie near one;
- `MixtureQuality`: both, as the metrics a GAN task records at each evaluation;
- `spearman`: rank correlation over an evaluation history (is a loss tracking quality?);
- `frechet_distance`: the Fréchet distance between Gaussians fitted to two feature sets
  (Heusel et al. 2017's FID formula, here on a pinned evaluator's features).

No scipy at run time (a dev-only dependency): the matrix square root in the Fréchet
distance uses a symmetric eigendecomposition.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# Changing these changes every published quality number of the experiments that use them.
PROJECTION_SEED = 20_170_126  # WGAN's arXiv date: the pinned directions of the sliced W1


def projections(dim: int, n: int, seed: int = PROJECTION_SEED) -> torch.Tensor:
    """`n` pinned unit directions in `dim` dimensions, as a (dim, n) float64 tensor."""
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(dim, n, generator=g, dtype=torch.float64)
    return p / p.norm(dim=0, keepdim=True)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, directions: torch.Tensor) -> float:
    """Mean over `directions` of the exact 1-D Wasserstein-1 distance between the projections
    of two samples of equal size (for equal sizes, 1-D W1 is the mean gap of sorted values)."""
    if a.shape != b.shape:
        raise ValueError(f"samples of different shapes {tuple(a.shape)} and {tuple(b.shape)}")
    pa = (a.double() @ directions).sort(dim=0).values
    pb = (b.double() @ directions).sort(dim=0).values
    return float((pa - pb).abs().mean())


def ring_modes(n_modes: int, radius: float) -> torch.Tensor:
    """Centres of `n_modes` Gaussians evenly spaced on a circle of `radius`, (n_modes, 2)."""
    angle = 2 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
    return radius * torch.stack([angle.cos(), angle.sin()], dim=1)


def mode_coverage(x: torch.Tensor, centres: torch.Tensor, min_share: float) -> dict[str, float]:
    """How a sample spreads over the modes (coverage, not sharpness): a point counts for its
    nearest centre when it is nearer to that centre than to the centres' mean (points in the
    middle of a ring count for none); a mode is covered when it holds at least `min_share` of
    its fair share (1 / n_modes) of all points. Returns the number of covered modes and the
    fraction of points at the most crowded mode (1 / n_modes even, 1 collapsed)."""
    x, centres = x.double(), centres.double()
    dist = torch.cdist(x, centres)
    nearest, which = dist.min(dim=1)
    counted = nearest < (x - centres.mean(dim=0)).norm(dim=1)
    counts = torch.bincount(which[counted], minlength=len(centres)).double()
    fair = len(x) / len(centres)
    return {
        "modes": float((counts >= min_share * fair).sum()),
        "top_mode_share": float(counts.max() / len(x)),
    }


def near_modes(x: torch.Tensor, centres: torch.Tensor, within: float) -> float:
    """Fraction of points within `within` of some centre (sharpness, not coverage)."""
    return float(
        (torch.cdist(x.double(), centres.double()).min(dim=1).values < within).double().mean()
    )


class MixtureQuality:
    """The quality metrics of samples from a ring of Gaussians (`quality/...`): the sliced
    W1 to a real sample of the same size, mode coverage, and the fraction of samples within
    `within` of a mode."""

    def __init__(
        self,
        n_modes: int = 8,
        radius: float = 2.0,
        within: float = 0.2,
        min_share: float = 0.25,
        n_directions: int = 128,
    ):
        self.centres = ring_modes(n_modes, radius)
        self.within, self.min_share = within, min_share
        self.directions = projections(2, n_directions)

    def __call__(self, fake: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
        fake, real = fake.detach().cpu(), real.detach().cpu()
        out = {"quality/sw1": sliced_wasserstein(fake, real, self.directions)}
        cover = mode_coverage(fake, self.centres, self.min_share)
        out.update({f"quality/{k}": v for k, v in cover.items()})
        out["quality/near_mode"] = near_modes(fake, self.centres, self.within)
        return out


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, ties given their mean rank."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x), dtype=np.float64)
    for v in np.unique(x):  # average the ranks of ties
        tied = x == v
        if tied.sum() > 1:
            r[tied] = r[tied].mean()
    return r


def spearman(a, b) -> float:
    """Spearman's rank correlation of two equal-length sequences (nan when either is constant
    or shorter than 3)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) != len(b):
        raise ValueError(f"sequences of lengths {len(a)} and {len(b)}")
    if len(a) < 3:
        return float("nan")
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((m + m.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2): the Fréchet (Wasserstein-2)
    distance squared between two Gaussians, symmetric in its arguments."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    s1 = _sqrtm_psd(cov1)
    cross = _sqrtm_psd(s1 @ cov2 @ s1)
    d = float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(cross))
    return max(d, 0.0)


def feature_statistics(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased) of an (n, d) feature matrix, in float64."""
    f = features.detach().cpu().double().numpy()
    return f.mean(axis=0), np.cov(f, rowvar=False)


# --- codes of a latent-code GAN (InfoGAN) ---------------------------------------------


def best_assignment(score: np.ndarray) -> tuple[np.ndarray, float]:
    """The one-to-one assignment of rows to columns of a square `score` matrix with the
    largest total (e.g. clusters to digit labels, from their co-occurrence counts): exact,
    by dynamic programming over subsets of columns (n 2^n steps: fine for n <= 16; no
    scipy at run time). Returns (column of each row, total)."""
    score = np.asarray(score, dtype=np.float64)
    n = score.shape[0]
    if score.shape != (n, n) or n > 16:
        raise ValueError(f"need a square matrix of side <= 16, got {score.shape}")
    full = 1 << n
    best = np.full(full, -np.inf)
    best[0] = 0.0
    choice = np.zeros(full, dtype=np.int64)
    for mask in range(full):
        if best[mask] == -np.inf:
            continue
        row = bin(mask).count("1")  # rows are assigned in order
        if row == n:
            continue
        for col in range(n):
            if not mask >> col & 1:
                nxt, value = mask | 1 << col, best[mask] + score[row, col]
                if value > best[nxt]:
                    best[nxt], choice[nxt] = value, col
    cols, mask = np.empty(n, dtype=np.int64), full - 1
    for row in range(n - 1, -1, -1):
        cols[row] = choice[mask]
        mask &= ~(1 << cols[row])
    return cols, float(best[full - 1])


def permuted_accuracy(clusters, labels, k: int = 10) -> float:
    """Accuracy of `clusters` (0..k-1) as a classifier of `labels` (0..k-1) under the best
    one-to-one mapping of clusters to labels (InfoGAN's "matching each category in c1 to a
    digit type")."""
    clusters, labels = np.asarray(clusters), np.asarray(labels)
    counts = np.zeros((k, k))
    np.add.at(counts, (clusters, labels), 1)
    _, matched = best_assignment(counts)
    return matched / len(labels)


def categorical_mi_lower_bound(log_q: torch.Tensor, codes: torch.Tensor) -> float:
    """InfoGAN's variational lower bound on I(c; G(z, c)) for a uniform k-way code:
    H(c) + E log Q(c | x) = log k + mean of `log_q` (n, k log-probabilities of Q) at the
    codes that made each sample. At most log k; equal to the mutual information when Q is
    the true posterior."""
    k = log_q.shape[1]
    picked = log_q.gather(1, codes.long().reshape(-1, 1))
    return math.log(k) + float(picked.double().mean())
