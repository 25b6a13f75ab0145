"""Multi-MNIST for Attend, Infer, Repeat (Eslami et al., NIPS 2016, section 3.1): 50 x 50
canvases holding 0, 1 or 2 MNIST digits, the label being the number of digits.

Generated from the real MNIST (torchvision's files, checked by `make data`):

- each digit is the tight box around its ink (pixels > 0; at most 20 x 20 in MNIST),
  pasted at a uniformly random whole-pixel position inside the canvas; with two digits
  the position of the second (and, if needed, both) is redrawn until the two ink boxes
  do not overlap (at most `MAX_TRIES` redraws; two 20 x 20 boxes always fit side by side
  on a 50 x 50 canvas); pixels are combined by maximum, so values stay in [0, 1];
- training scenes are generated afresh for each step from a generator seeded by
  (seed, step) (`GeneratedSteps`), so a resumed run sees the batches an uninterrupted run
  sees; their counts are uniform over 0..max_digits and their digits come from MNIST's
  first 50,000 training images;
- validation (MNIST training images 50,000-59,999) and test (MNIST's test images) scenes
  are generated once from `data_seed` and hold the counts 0, 1, 2, 0, 1, 2, ... (exactly a
  third each for 3,000 scenes: the majority-class baseline is 1/3); their uint8 pixels and
  counts are pinned by SHA-256 for the real MNIST files, so a change in the generator fails
  loudly instead of silently changing the task.

What is the paper's: the 50 x 50 canvas and 0, 1 or 2 digits with equal probability. Ours
(not in our sources): the ink-box non-overlap rule, the maximum compositing, the sizes of
the validation and test sets.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from shortsci_bench.data import verify as unpacked_files
from shortsci_bench.data.batches import (
    EvalBatches,
    GeneratedSteps,
    sharded_eval,
    start_at_global_step,
)

MAX_TRIES = 100
N_TRAIN_DIGITS = 50_000  # MNIST train images 0..49,999 for training scenes, the rest for validation
SPLIT_OFFSET = {"val": 1, "test": 2}
# The MNIST image files the pins below were computed from (sha256 as `make data` records them).
MNIST_IMAGES_SHA256 = {
    "MNIST/raw/t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "MNIST/raw/train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
}
# SHA-256 of (uint8 canvases, int64 counts) by (canvas, max_digits, data_seed, split, n).
PINNED_SHA256: dict[tuple[int, int, int, str, int], str] = {
    (50, 2, 0, "val", 1000): "7396ffa055d306baa2ed23d96aa6b03bc1311dce1f76995ccbe147e6896f0584",
    (50, 2, 0, "val", 600): "0baaa407302387f26e02ffd30b3508c81e47442eb08e9467893093333aabac77",
    (50, 2, 0, "val", 300): "be871ce69f4ae15272da9092756ad82cbaeb57d3bc9496bae3a11c6c2ea7d3e9",
    (50, 2, 0, "test", 3000): "6c4a0ebca1ca758d31794130e878124feb83b538fffa3a7b5f0bd93b655bf83b",
}


def ink_boxes(images: torch.Tensor) -> torch.Tensor:
    """(M, H, W) uint8 -> (M, 4) int64 [r0, r1, c0, c1): the tight box around pixels > 0
    (the whole image when it is blank)."""
    ink = images > 0
    rows, cols = ink.any(2), ink.any(1)
    h, w = images.shape[1:]

    def span(mask: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.arange(n).expand_as(mask)
        first = torch.where(mask, idx, n).min(1).values
        last = torch.where(mask, idx, -1).max(1).values + 1
        blank = last == 0
        return torch.where(blank, 0, first), torch.where(blank, n, last)

    r0, r1 = span(rows, h)
    c0, c1 = span(cols, w)
    return torch.stack([r0, r1, c0, c1], 1)


def make_scenes(
    images: torch.Tensor,
    boxes: torch.Tensor,
    n: int,
    canvas: int,
    max_digits: int,
    g: torch.Generator,
    counts: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` scenes: uint8 canvases (n, canvas, canvas) and int64 counts (n,). Counts are drawn
    uniformly from 0..max_digits unless given; every draw comes from `g`, in a fixed order."""
    if counts is None:
        counts = torch.randint(0, max_digits + 1, (n,), generator=g)
    which = torch.randint(0, len(images), (n, max_digits), generator=g)
    b = boxes[which]  # (n, k, 4)
    h, w = b[..., 1] - b[..., 0], b[..., 3] - b[..., 2]
    if (h > canvas).any() or (w > canvas).any():
        raise ValueError(f"a digit's ink box is larger than the {canvas}x{canvas} canvas")

    def draw() -> tuple[torch.Tensor, torch.Tensor]:
        u = torch.rand((n, max_digits, 2), generator=g, dtype=torch.float64)
        r = (u[..., 0] * (canvas - h + 1)).floor().long()
        c = (u[..., 1] * (canvas - w + 1)).floor().long()
        return r, c

    def overlapping(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        bad = torch.zeros(n, dtype=torch.bool)
        for i in range(max_digits):
            for j in range(i + 1, max_digits):
                rows = (r[:, i] < r[:, j] + h[:, j]) & (r[:, j] < r[:, i] + h[:, i])
                cols = (c[:, i] < c[:, j] + w[:, j]) & (c[:, j] < c[:, i] + w[:, i])
                bad |= rows & cols & (counts > j)  # only digits actually placed
        return bad

    r, c = draw()
    for _ in range(MAX_TRIES):
        bad = overlapping(r, c)
        if not bad.any():
            break
        r2, c2 = draw()  # always drawn, so the stream does not depend on how many are bad
        r, c = torch.where(bad[:, None], r2, r), torch.where(bad[:, None], c2, c)
    else:
        raise RuntimeError(f"could not place non-overlapping digits in {MAX_TRIES} tries")

    out = np.zeros((n, canvas, canvas), dtype=np.uint8)
    imgs, bn, rn, cn = images.numpy(), b.numpy(), r.numpy(), c.numpy()
    wh, ww, wn = h.numpy(), w.numpy(), which.numpy()
    for i, k in enumerate(counts.tolist()):
        for j in range(k):
            r0, _, c0, _ = bn[i, j]
            crop = imgs[wn[i, j], r0 : r0 + wh[i, j], c0 : c0 + ww[i, j]]
            dst = out[i, rn[i, j] : rn[i, j] + wh[i, j], cn[i, j] : cn[i, j] + ww[i, j]]
            np.maximum(dst, crop, out=dst)
    return torch.from_numpy(out), counts.long()


def scenes_sha256(canvases: torch.Tensor, counts: torch.Tensor) -> str:
    h = hashlib.sha256()
    h.update(canvases.numpy().astype(np.uint8).tobytes())
    h.update(counts.numpy().astype("<i8").tobytes())
    return h.hexdigest()


def to_float(canvases: torch.Tensor) -> torch.Tensor:
    """uint8 (n, H, W) -> float32 (n, 1, H, W) in [0, 1]."""
    return canvases.float().div_(255.0).unsqueeze(1)


class MultiMNISTDataModule(L.LightningDataModule):
    """Batches (x, counts): x float (B, 1, canvas, canvas) in [0, 1], counts int64 (B,)."""

    name = "multi_mnist"

    def __init__(
        self,
        root: str = "data",
        mirror: str | None = None,
        download: bool = True,
        canvas: int = 50,
        max_digits: int = 2,
        n_val: int = 1000,
        n_test: int = 3000,
        data_seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int = 500,
        steps: int = 1000,
        seed: int = 0,
        eval_subset: int | None = None,
    ):
        super().__init__()
        self.root, self.mirror, self.download = root, mirror, download
        self.canvas, self.max_digits, self.data_seed = canvas, max_digits, data_seed
        self.sizes = {"val": n_val, "test": n_test}
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.steps, self.seed, self.eval_subset = steps, seed, eval_subset
        self.digits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.sha256: dict[str, str] = {}
        self.pinned: dict[str, bool] = {}
        self.files: dict[str, str] = {}
        self.load_seconds = 0.0

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        from shortsci_bench.data.mnist import load_mnist

        t0 = time.perf_counter()
        train, test = load_mnist(self.root, self.mirror, self.download)
        self.files = {
            rel: sha
            for rel, sha in unpacked_files.recorded("mnist", Path(self.root)).items()
            if rel in MNIST_IMAGES_SHA256
        }
        real = self.files == MNIST_IMAGES_SHA256
        sources = {
            "train": train.data[:N_TRAIN_DIGITS],
            "val": train.data[N_TRAIN_DIGITS:],
            "test": test.data,
        }
        self.digits = {k: (v.contiguous(), ink_boxes(v)) for k, v in sources.items()}
        for split, n in self.sizes.items():
            g = torch.Generator().manual_seed(self.data_seed * 10 + SPLIT_OFFSET[split])
            counts = torch.arange(n) % (self.max_digits + 1)
            canv, counts = make_scenes(
                *self.digits[split], n, self.canvas, self.max_digits, g, counts=counts
            )
            digest = scenes_sha256(canv, counts)
            key = (self.canvas, self.max_digits, self.data_seed, split, n)
            pin = PINNED_SHA256.get(key) if real else None
            if pin is not None and pin != digest:
                raise RuntimeError(
                    f"multi-MNIST {split} scenes {key} have SHA-256 {digest}, but {pin} is "
                    "pinned for these MNIST files: the generator changed"
                )
            self.sha256[split], self.pinned[split] = digest, pin is not None
            if self.eval_subset:
                canv, counts = canv[: self.eval_subset], counts[: self.eval_subset]
            self.splits[split] = (to_float(canv), counts)
        self.load_seconds = time.perf_counter() - t0

    def train_batch(self, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        canv, counts = make_scenes(
            *self.digits["train"], self.batch_size, self.canvas, self.max_digits, g
        )
        return to_float(canv), counts

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _on_device(self, split: str) -> tuple[torch.Tensor, ...]:
        return tuple(t.to(self._device()) for t in self.splits[split])

    def train_dataloader(self) -> GeneratedSteps:
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:
            raise NotImplementedError("multi-MNIST scenes are generated for one device")
        return GeneratedSteps(
            self.train_batch, self.steps, self.seed, start_at_global_step(trainer)
        )

    def val_dataloader(self) -> EvalBatches:
        return sharded_eval(self, self._on_device("val"))

    def test_dataloader(self) -> EvalBatches:
        return EvalBatches(self._on_device("test"), self.eval_batch_size)

    def provenance(self) -> dict:
        return {
            "dataset": "multi_mnist",
            "source": "generated: experiments.attend_infer_repeat.data.make_scenes from "
            "torchvision.datasets.MNIST",
            "files": self.files,
            "canvas": self.canvas,
            "max_digits": self.max_digits,
            "data_seed": self.data_seed,
            "checksums": {f"{k}.sha256": v for k, v in self.sha256.items()},
            "checksums_pinned": self.pinned,
            "sizes": self.sizes,
            "eval_subset": self.eval_subset,
            "n_eval": len(self.splits["val"][1]) if self.splits else None,
            "n_test": len(self.splits["test"][1]) if self.splits else None,
        }
