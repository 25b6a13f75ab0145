"""MNIST data path: one epoch of the datamodule's batches vs a stock torchvision DataLoader.

The stock path is what most code does: `MNIST(transform=ToTensor())` and a DataLoader
with batch 60 and per-item transforms (PIL image -> tensor, then flatten). Prints
batches/s of each and the ratio (goal: 10x or better). CPU, measured in the same run.

    python bench/data.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import MNIST

from shortsci_bench.data.mnist import MNISTDataModule


def epoch_time(iterable) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = 0
    for x, _y in iterable:
        n += 1
        x.sum()  # touch the batch so lazy work is done
    return time.perf_counter() - t0, n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--root", default="data")
    args = p.parse_args()
    dm = MNISTDataModule(root=args.root, batch_size=60, steps=60_000 // 60)
    dm.setup()
    stock_ds = MNIST(
        args.root,
        train=True,
        transform=transforms.Compose(
            [transforms.ToTensor(), transforms.Lambda(lambda t: t.view(-1))]
        ),
    )
    ours, stock = [], []
    for _ in range(args.repeats):
        ours.append(epoch_time(dm.train_dataloader()))
        stock.append(
            epoch_time(
                DataLoader(
                    stock_ds,
                    batch_size=60,
                    shuffle=True,
                    num_workers=0,
                    generator=torch.Generator().manual_seed(0),
                )
            )
        )
    (to, no), (ts, ns) = min(ours), min(stock)
    print(
        f"bench/data: datamodule {no / to:,.0f} batches/s ({to:.3f} s/epoch), "
        f"stock DataLoader {ns / ts:,.0f} batches/s ({ts:.3f} s/epoch), batch 60, best of {args.repeats}"
    )
    print(f"bench/data: ratio datamodule/stock = {(no / to) / (ns / ts):.1f}x (goal >= 10x)")


if __name__ == "__main__":
    main()
