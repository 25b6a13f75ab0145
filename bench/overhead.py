"""Harness overhead: the harness's training step vs a hand-written PyTorch loop (CPU).

Same MLP (the Batch Normalization paper's 784-100-100-100-10, sigmoid, BN), same in-memory
MNIST batches of 60, same SGD. Prints steps/s of each and the ratio harness/bare
(goal: 0.95 or better). Both are measured in this run, alternately, best of `--repeats`.

    python bench/overhead.py [--steps 3000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from timing import timed_trainer  # bench/ is the script's folder: on sys.path

from shortsci_bench.config import cpu_threads
from shortsci_bench.data.batches import TrainStream
from shortsci_bench.data.mnist import MNISTDataModule
from shortsci_bench.models.mlp import MLP
from shortsci_bench.tasks.classification import ClassificationTask


def bare_loop(tensors, steps: int) -> float:
    torch.manual_seed(0)
    model = MLP(batchnorm=True, init_std=0.1)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    stream = TrainStream(tensors, 60, steps, seed=0)
    model.train()
    t0 = time.perf_counter()
    for x, y in stream:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return steps / (time.perf_counter() - t0)


def harness_loop(tensors, steps: int) -> float:
    torch.manual_seed(0)
    task = ClassificationTask(
        MLP(batchnorm=True, init_std=0.1), optimizer=lambda params: torch.optim.SGD(params, lr=0.5)
    )
    trainer, timer = timed_trainer(steps)
    trainer.fit(task, train_dataloaders=TrainStream(tensors, 60, steps, seed=0))
    return timer.steps / timer.seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(cpu_threads("auto"))
    dm = MNISTDataModule(root="data")
    dm.setup()
    bare, harness = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(dm.train, args.steps))
        harness.append(harness_loop(dm.train, args.steps))
    b, h = max(bare), max(harness)
    print(
        f"bench/overhead: bare loop {b:,.0f} steps/s, harness {h:,.0f} steps/s "
        f"(best of {args.repeats} x {args.steps} steps, {torch.get_num_threads()} threads)"
    )
    print(f"bench/overhead: ratio harness/bare = {h / b:.3f} (goal >= 0.95)")


if __name__ == "__main__":
    main()
