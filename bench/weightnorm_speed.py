"""Time per update of the Weight Normalization paper's CIFAR-10 network, by normalisation.

The paper (Salimans & Kingma 2016, section 5.1; summary 003 line 12) reports batch norm
about 16% slower per update than weight norm. In `weightnorm_cifar` runs each arm's
`time/step_s` is measured in its own process, at whatever load the machine had then; here
every arm takes updates in turn, round after round, in one process, so a change of load
hits all arms alike. Each update: forward, cross-entropy, backward and an Adam step on a
fixed random batch of 100 32x32 images (training mode: input noise, dropout, batch
statistics). Prints the median seconds per update by arm and each arm's ratio to
`weightnorm` (the baseline, measured in the same run).

    .venv/bin/python bench/weightnorm_speed.py [--width 0.25] [--rounds 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from experiments.weight_normalization.model import NORMS, WeightNormCNN


def one_update(model, opt, x, y) -> float:
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=float, default=0.25, help="channel multiplier (quick: 0.25)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=30, help="timed updates per arm")
    ap.add_argument("--warmup", type=int, default=3, help="untimed updates per arm first")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--arms", default=",".join(NORMS))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    arms = args.arms.split(",")
    if "weightnorm" not in arms:
        arms.insert(0, "weightnorm")
    models = {a: WeightNormCNN(norm=a, width=args.width).train() for a in arms}
    opts = {a: torch.optim.Adam(m.parameters(), lr=1e-3) for a, m in models.items()}
    for a in arms:
        for _ in range(args.warmup):
            one_update(models[a], opts[a], x, y)
    times: dict[str, list[float]] = {a: [] for a in arms}
    for r in range(args.rounds):
        # rotate the order so no arm always runs first (cache state, frequency ramps)
        for a in arms[r % len(arms) :] + arms[: r % len(arms)]:
            times[a].append(one_update(models[a], opts[a], x, y))
    base = statistics.median(times["weightnorm"])
    print(
        f"width {args.width}, batch {args.batch}, {args.rounds} interleaved updates per arm, "
        f"{args.threads} thread(s)"
    )
    print(f"{'arm':<24} {'median s/update':>16} {'ratio to weightnorm':>20}")
    ratios = {}
    for a in arms:
        med = statistics.median(times[a])
        ratios[a] = med / base
        print(f"{a:<24} {med:>16.4f} {ratios[a]:>19.2f}x")
    print("paper (section 5.1): batch norm about 1.16x weight norm per update")
    return ratios


if __name__ == "__main__":
    main()
