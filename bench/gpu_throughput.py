"""Seed-steps/s of seed batching (issue 15), on a CPU or a GPU; a benchmark, not a test.

For each experiment that batches seeds (`seed_batching: true`), at one tier and arm, in the
same process and alternately (best of `--repeats`):

- `single`:  today's one-seed path: the harness (Lightning) training one seed's task;
- `batched`: the harness training S seeds stacked (`shortsci_bench.seedbatch.SeedBatchTask`);
- `ceiling`: a hand-written loop over the same stacked model and loss (the task's
  `stacked_losses`), with the seeds' batches already stacked on the device, no Lightning;
- `ceiling+graph` (CUDA only): the same loop captured once as a CUDA graph and replayed.

It prints seed-steps/s and the ratios batched/single and batched/ceiling. Evaluation is off
(`limit_val_batches=0`): this measures training steps. `--end-to-end` also times whole
commands, as a user runs them: S single runs one after another against one `seeds=` run
(start-up, data loading and evaluations included), the CPU goal of issue 15.

    python bench/gpu_throughput.py [--tier quick] [--seeds 3] [--steps 300] [--repeats 2]
        [--experiments batchnorm_mnist:bn,vardrop_mnist:bernoulli] [--end-to-end]

On a shared machine the numbers move with the load: run it twice and compare.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import lightning as L
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from timing import timed_trainer  # noqa: E402  (bench/: the script's folder)

from shortsci_bench import seedbatch  # noqa: E402
from shortsci_bench.config import register_resolvers  # noqa: E402
from shortsci_bench.run import build_task, seed_config  # noqa: E402

DEFAULT = "batchnorm_mnist:bn,vardrop_mnist:bernoulli"


def compose(experiment: str, arm: str, tier: str, steps: int, device: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    from shortsci_bench import config

    register_resolvers()
    overrides = [f"+experiment={experiment}", f"arm={arm}", f"tier={tier}", "threads=1"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=overrides)
    config.finalize(cfg, overrides, gpu_available=device == "cuda")
    with open_dict(cfg):
        cfg.trainer.max_steps = steps  # a measurement, not a run: no record is written
    return cfg


def _trainer(steps: int, device: str):
    return timed_trainer(steps, "gpu" if device == "cuda" else "cpu", skip=1)


def _build(cfg, seeds: list[int], datamodule=None):
    tasks, dms, rngs = [], [], []
    for seed in seeds:
        one = seed_config(cfg, seed)
        L.seed_everything(seed, verbose=False)
        dm = instantiate_dataset(one)
        if datamodule is not None and hasattr(datamodule, "train"):  # share the loaded data
            dm.train, dm.test = datamodule.train, datamodule.test
        dms.append(dm)
        tasks.append(build_task(one))
        rngs.append(seedbatch.SeedRNG(cuda=torch.cuda.is_available()))
    return tasks, dms, rngs


def instantiate_dataset(cfg):
    from hydra.utils import instantiate

    return instantiate(cfg.dataset)


def single(cfg, steps: int, device: str, shared) -> float:
    [task], [dm], _ = _build(cfg, [0], shared)
    trainer, timer = _trainer(steps, device)
    trainer.fit(task, datamodule=dm)
    return timer.steps / timer.seconds


def batched(cfg, seeds: list[int], steps: int, device: str, shared) -> float:
    tasks, dms, rngs = _build(cfg, seeds, shared)
    ensemble = seedbatch.SeedBatchTask(tasks, seeds, rngs)
    trainer, timer = _trainer(steps, device)
    trainer.fit(ensemble, datamodule=seedbatch.SeedBatchData(dms))
    return timer.steps * len(seeds) / timer.seconds


def ceiling(cfg, seeds: list[int], steps: int, device: str, shared, graph: bool) -> float | None:
    """The stacked model in a bare loop; batches drawn ahead and kept on the device."""
    tasks, dms, rngs = _build(cfg, seeds, shared)
    ens = seedbatch.SeedBatchTask(tasks, seeds, rngs).to(device)
    template = ens._loss_module.task.to(device)
    for task in tasks:
        task.to(device)
    for dm in dms:
        dm.setup("fit")
    streams = [dm.train_dataloader() for dm in dms]
    n = min(steps, 64)  # a ring of batches: enough to keep the caches honest
    batches = [seedbatch._stack([next_batch(s, i) for s in streams]) for i in range(n)]
    batches = [tuple(t.to(device) for t in b) for b in batches]
    params, buffers = ens._stacked_params(), ens._stacked_buffers()
    opt = template.optimizer_factory(params=list(ens.stacked))

    def noise_for(batch):
        per = []
        for i, task in enumerate(tasks):
            with rngs[i].torch_only():
                per.append(task.draw_noise(tuple(t[i] for t in batch)))
        return seedbatch._stack(per)

    def step(batch, noise):
        losses = template.stacked_losses(params, buffers, batch, noise)
        opt.zero_grad(set_to_none=False)
        losses.sum().backward()
        opt.step()
        return losses

    if step(batches[0], noise_for(batches[0])) is None:
        return None
    if not graph:
        t0 = time.perf_counter()
        for k in range(steps):
            b = batches[k % n]
            step(b, noise_for(b))
        if device == "cuda":
            torch.cuda.synchronize()
        return steps * len(seeds) / (time.perf_counter() - t0)
    # CUDA graph: static inputs, copied into before each replay. The noise is drawn outside
    # the graph (per seed, as the harness draws it) and copied in like the batch.
    static_b = tuple(t.clone() for t in batches[0])
    static_n = _clone(noise_for(batches[0]))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm-up on a side stream, as torch.cuda.graphs requires
            step(static_b, static_n)
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        step(static_b, static_n)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for k in range(steps):
        b = batches[k % n]
        for dst, src in zip(static_b, b):
            dst.copy_(src)
        _copy(static_n, noise_for(b))
        g.replay()
    torch.cuda.synchronize()
    return steps * len(seeds) / (time.perf_counter() - t0)


def _clone(tree):
    if tree is None:
        return None
    if torch.is_tensor(tree):
        return tree.clone()
    return type(tree)(_clone(t) for t in tree)


def _copy(dst, src) -> None:
    if dst is None:
        return
    if torch.is_tensor(dst):
        dst.copy_(src)
        return
    for d, s in zip(dst, src):
        _copy(d, s)


def next_batch(stream, i: int):
    return stream.batch(i)


def end_to_end(experiment: str, arm: str, tier: str, seeds: list[int]) -> tuple[float, float]:
    """Wall seconds of S single-run commands one after another, and of one `seeds=` command."""
    import tempfile

    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
    base = [sys.executable, "-m", "shortsci_bench", f"+experiment={experiment}", f"arm={arm}"]
    base += [f"tier={tier}", "threads=1", "logger=none"]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for seed in seeds:
            subprocess.run([*base, f"seed={seed}", f"runs_dir={tmp}/single"], env=env, check=True,
                           capture_output=True)  # fmt: skip
        t_single = time.perf_counter() - t0
        t0 = time.perf_counter()
        joined = ",".join(str(s) for s in seeds)
        subprocess.run([*base, f"seeds={joined}", f"runs_dir={tmp}/batched"], env=env, check=True,
                       capture_output=True)  # fmt: skip
        t_batched = time.perf_counter() - t0
    return t_single, t_batched


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tier", default="quick")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--experiments", default=DEFAULT, help="name:arm,... (default: %(default)s)")
    p.add_argument("--end-to-end", action="store_true", help="also time whole commands")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    seeds = list(range(args.seeds))
    print(f"device {device} ({torch.cuda.get_device_name() if device == 'cuda' else os.cpu_count()} "
          f"cores), torch {torch.__version__}, threads {args.threads}, load {os.getloadavg()[0]:.1f}, "
          f"tier {args.tier}, {args.seeds} seeds, {args.steps} steps")  # fmt: skip
    for item in args.experiments.split(","):
        experiment, arm = item.split(":")
        cfg = compose(experiment, arm, args.tier, args.steps, device)
        shared = instantiate_dataset(seed_config(cfg, 0))
        shared.setup("fit")
        best: dict[str, float] = {}
        for _ in range(args.repeats):
            runs = {
                "single": partial(single, cfg, args.steps, device, shared),
                "batched": partial(batched, cfg, seeds, args.steps, device, shared),
                "ceiling": partial(ceiling, cfg, seeds, args.steps, device, shared, False),
            }
            if device == "cuda":
                runs["ceiling+graph"] = partial(
                    ceiling, cfg, seeds, args.steps, device, shared, True
                )
            for name, fn in runs.items():
                value = fn()
                if value is not None:
                    best[name] = max(best.get(name, 0.0), value)
        line = "  ".join(f"{k} {v:,.0f}" for k, v in best.items())
        print(f"{experiment}:{arm}  seed-steps/s  {line}")
        top = max(v for k, v in best.items() if k.startswith("ceiling"))
        print(
            f"  batched/single {best['batched'] / best['single']:.2f}x   "
            f"batched/ceiling {best['batched'] / top:.2f}"
        )
        if args.end_to_end:
            t_single, t_batched = end_to_end(experiment, arm, args.tier, seeds)
            print(
                f"  end to end, tier {args.tier}: {args.seeds} single runs {t_single:.1f} s, "
                f"one seeds= run {t_batched:.1f} s: {t_single / t_batched:.2f}x"
            )


if __name__ == "__main__":
    main()
