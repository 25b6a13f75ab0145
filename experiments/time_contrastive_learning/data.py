"""The nonstationary nonlinear ICA model of Hyvärinen & Morioka, "Unsupervised Feature
Extraction by Time-Contrastive Learning and Nonlinear ICA" (NIPS 2016, arXiv 1605.06336),
Section 5 (simulation), and a datamodule holding one generated data set.

Sources: n independent Laplace components; the time series is cut into segments of equal
length, and in each segment each source's standard deviation is a fresh draw from
U(0, 1) (the nonstationarity TCL uses). Mixing: an invertible MLP of `depth` layers:
x = A_L(... leaky(A_2 leaky(A_1 s))), with square matrices whose entries are U(-1, 1),
columns scaled to unit norm, redrawn until their condition number is below a threshold
(the 25th percentile of random draws' condition numbers), and leaky ReLU (slope 0.2)
between layers: one layer is a linear mixture. These choices follow the authors' released
code (github.com/hmorioka/TCL, subfunc/generate_artificial_data.py); the code here is ours.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from experiments.time_contrastive_learning.ica import whiten
from shortsci_bench.data.batches import EvalBatches


def make_sources(
    n_comp: int, n_segments: int, segment_length: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sources (N, n), segment labels (N,), standard deviations (n_segments, n))."""
    scales = rng.uniform(0.0, 1.0, (n_segments, n_comp))
    unit = rng.laplace(0.0, 1.0 / np.sqrt(2.0), (n_segments, segment_length, n_comp))
    sources = (unit * scales[:, None, :]).reshape(-1, n_comp)
    labels = np.repeat(np.arange(n_segments), segment_length)
    return sources, labels, scales


def condition_threshold(n: int, rng: np.random.Generator, draws: int = 10000, q: float = 0.25):
    conds = [np.linalg.cond(_unit_columns(rng.uniform(-1, 1, (n, n)))) for _ in range(draws)]
    return float(np.sort(conds)[int(draws * q)])


def _unit_columns(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=0, keepdims=True)


def mixing_matrices(n: int, depth: int, rng: np.random.Generator, draws: int = 10000):
    """`depth` well-conditioned square matrices (applied in list order)."""
    thresh = condition_threshold(n, rng, draws)
    mats = []
    for _ in range(depth):
        while True:
            a = _unit_columns(rng.uniform(-1, 1, (n, n)))
            if np.linalg.cond(a) <= thresh:
                mats.append(a)
                break
    return mats


def leaky_relu(x: np.ndarray, slope: float) -> np.ndarray:
    return np.where(x >= 0, x, slope * x)


def mix(sources: np.ndarray, mats: list[np.ndarray], slope: float = 0.2) -> np.ndarray:
    """x = A_L leaky(... leaky(A_1 s)): rows are time points."""
    x = sources @ mats[0].T
    for a in mats[1:]:
        x = leaky_relu(x, slope) @ a.T
    return x


def unmix(x: np.ndarray, mats: list[np.ndarray], slope: float = 0.2) -> np.ndarray:
    """The exact inverse of `mix` (leaky ReLU with slope > 0 and invertible matrices)."""
    for a in mats[:0:-1]:
        x = np.linalg.solve(a, x.T).T
        x = np.where(x >= 0, x, x / slope)
    return np.linalg.solve(mats[0], x.T).T


class NonstationaryICADataModule(L.LightningDataModule):
    """One data set per seed: sources, segment labels and PCA-whitened observations, handed
    to the (evaluate-only) task as one batch of float64 tensors."""

    name = "nonstationary_ica"

    def __init__(
        self,
        n_comp: int = 20,
        n_segments: int = 256,
        segment_length: int = 512,
        depth: int = 1,
        slope: float = 0.2,
        condition_draws: int = 10000,
        seed: int = 0,
    ):
        super().__init__()
        self.n_comp, self.n_segments, self.segment_length = n_comp, n_segments, segment_length
        self.depth, self.slope, self.condition_draws, self.seed = (
            depth,
            slope,
            condition_draws,
            seed,
        )
        self.data: tuple[torch.Tensor, ...] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        rng = np.random.default_rng(self.seed)
        s, labels, _ = make_sources(self.n_comp, self.n_segments, self.segment_length, rng)
        mats = mixing_matrices(self.n_comp, self.depth, rng, self.condition_draws)
        x, _, _ = whiten(mix(s, mats, self.slope))
        self.data = (torch.from_numpy(x), torch.from_numpy(labels), torch.from_numpy(s))

    def val_dataloader(self):
        return EvalBatches(self.data, len(self.data[0]))  # the whole set as one batch

    def provenance(self) -> dict:
        return {
            "dataset": "nonstationary_ica",
            "source": "experiments.time_contrastive_learning.data (generated)",
            "n_comp": self.n_comp,
            "n_segments": self.n_segments,
            "segment_length": self.segment_length,
            "depth": self.depth,
            "seed": self.seed,
        }
