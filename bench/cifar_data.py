"""One epoch of augmented CIFAR-10 training batches: our datamodule vs a stock DataLoader.

Ours (`shortsci_bench.data.cifar10.CIFAR10DataModule`): uint8 tensors, a seeded
permutation, then pad-4 random crops, horizontal flips and per-channel normalisation
applied to each whole batch. The baseline: the same images in a stock
`torchvision.datasets.CIFAR10` (its per-item `__getitem__`: a PIL image per item) with
`RandomCrop(32, padding=4)`, `RandomHorizontalFlip`, `ToTensor`, `Normalize`, batched by a
`DataLoader`. Both on the CPU in this process (num_workers=0, one torch thread), batch
128, one pass over the training set. Goal (issue 5): 10x or better.

    .venv/bin/python bench/cifar_data.py [--source jpeg_full|subset_lossless] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader
from torchvision import transforms

from shortsci_bench.data.cifar10 import CIFAR10DataModule, CIFAR10Pickles


def epoch_ours(dm: CIFAR10DataModule) -> tuple[float, int]:
    stream = dm.train_dataloader()
    t0 = time.perf_counter()
    n = 0
    for step in range(stream.per_pass):
        x, _y = stream.batch(step)
        n += len(x)
    return time.perf_counter() - t0, n


def stock_loader(dm: CIFAR10DataModule, batch_size: int) -> DataLoader:
    norm = dm.normalizer
    tf = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(
                (norm.mean / 255).flatten().tolist(), (norm.std / 255).flatten().tolist()
            ),
        ]
    )
    ds = CIFAR10Pickles(f"{dm.root}/cifar10-subset-lossless", train=True, transform=tf)
    # the stock per-item path over exactly our training images
    ds.data = dm.data.train_images.permute(0, 2, 3, 1).numpy()
    ds.targets = dm.data.train_labels.tolist()
    return DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=0, drop_last=True)


def epoch_stock(loader: DataLoader) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = 0
    for x, _y in loader:
        n += len(x)
    return time.perf_counter() - t0, n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default="jpeg_full", choices=["jpeg_full", "subset_lossless"])
    p.add_argument("--root", default="data")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeat", type=int, default=3, help="epochs timed per side (best kept)")
    args = p.parse_args()
    torch.set_num_threads(1)
    dm = CIFAR10DataModule(
        root=args.root,
        source=args.source,
        batch_size=args.batch_size,
        steps=10**9,
        augment={"pad": 4, "flip": True},
    )
    dm.setup()
    loader = stock_loader(dm, args.batch_size)
    ours = min(epoch_ours(dm) for _ in range(args.repeat))
    stock = min(epoch_stock(loader) for _ in range(args.repeat))
    ratio = stock[0] / ours[0]
    print(
        f"cifar_data ({args.source}, {ours[1]} images per epoch, batch {args.batch_size}, CPU, 1 thread)"
    )
    print(f"  ours  (whole-batch uint8 tensors):      {ours[0]:7.3f} s/epoch")
    print(f"  stock (DataLoader, per-item PIL):       {stock[0]:7.3f} s/epoch")
    print(f"  ratio: {ratio:.1f}x  (goal: 10x)")


if __name__ == "__main__":
    main()
