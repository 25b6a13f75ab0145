"""Seeds in one process (issue 15): a batched run of S seeds gives each seed the record its
single run gives; it resumes after a kill; finished seeds are skipped.

Tolerance. The batched step computes each seed's loss with batched matrix products (`bmm`)
and an explicit batch-norm formula where the single run uses `mm` and the fused batch-norm
kernel: the same float32 operations summed in another order. Reassociation alone moves a
float32 result by a few ulp (~1e-7 relative) per operation; over the smoke tier's 30-40 SGD
or Adam steps such differences grow but stay far below 1e-4 relative on the losses, probe
percentiles and alphas (measured: ~1e-6). Accuracies are counts over 1,000 test images: a
perturbation of 1e-6 can flip an example sitting on a decision boundary, so they may differ
by at most 2 examples (0.002). Anything else (another initialisation, batch order, noise
draw, a lost running-statistics update) moves these metrics by 1e-2 or more, so the tests
can fail. The noise (dropout masks, weight noise) and the batches themselves are drawn
exactly as in the single run: `test_noise_draws_are_the_single_runs` checks that bit for bit.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shortsci_bench.runs.record import read_record
from tests.conftest import REPO, compose_cfg, needs_mnist, run_cfg

SEEDS = [0, 1]
REL, ACC_EXAMPLES = 1e-4, 2
COUNTED = ("test/acc", "test/err", "test/acc_mean")

BATCHED = [
    ("batchnorm_mnist", "bn"),
    ("batchnorm_mnist", "plain"),
    ("vardrop_mnist", "none"),
    ("vardrop_mnist", "bernoulli"),
    ("vardrop_mnist", "gaussian"),
    ("vardrop_mnist", "vardrop_a"),
    ("vardrop_mnist", "vardrop_b"),
]


def run_seeds(overrides: list[str], runs_dir: Path):
    from shortsci_bench.run import run_seeds as run

    return run(compose_cfg(overrides, runs_dir))


def _science(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith("time/")}


def _close(key: str, a: float | None, b: float | None, n_eval: int) -> bool:
    if a is None or b is None:
        return a is b
    if key in COUNTED or key.endswith("/acc"):
        return abs(a - b) <= ACC_EXAMPLES / n_eval + 1e-12
    return abs(a - b) <= REL * max(1.0, abs(b))


def assert_same_run(batched, single) -> None:
    n_eval = single.provenance.data.get("n_eval") or 1000
    assert batched.config_hash == single.config_hash and batched.seed == single.seed
    assert batched.status == single.status
    a, b = _science(batched.metrics), _science(single.metrics)
    assert a.keys() == b.keys()
    far = {k: (a[k], b[k]) for k in a if not _close(k, a[k], b[k], n_eval)}
    assert not far, f"seed {single.seed}: batched vs single differ: {far}"
    assert [r["step"] for r in batched.history] == [r["step"] for r in single.history]
    for rb, rs in zip(batched.history, single.history):
        assert rb.keys() == rs.keys()
        assert all(_close(k, rb[k], rs[k], n_eval) for k in rb), (rb, rs)


@needs_mnist
@pytest.mark.parametrize(("experiment", "arm"), BATCHED)
def test_batched_seeds_give_each_seed_its_single_run(tmp_path, experiment, arm):
    base = [f"+experiment={experiment}", "tier=smoke", f"arm={arm}"]
    records = run_seeds([*base, f"seeds={SEEDS}"], tmp_path / "batched")
    assert [r.seed for r in records] == SEEDS
    for rec in records:
        assert rec.provenance.seed_batch["seeds"] == SEEDS
        assert rec.provenance.seed_batch["size"] == len(SEEDS)
        single = run_cfg([*base, f"seed={rec.seed}"], tmp_path / "single")
        assert_same_run(rec, single)
        # the same run folder (name, arm, tier, seed, hash) as the single run's
        rel = lambda r, root: next(  # noqa: E731
            p.parent.relative_to(root)
            for p in root.rglob("result.json")
            if read_record(p).seed == r.seed
        )
        assert rel(rec, tmp_path / "batched") == rel(single, tmp_path / "single")


@needs_mnist
def test_the_vmap_path_gives_the_single_run_too(tmp_path):
    """`seed_batching: vmap` skips the task's stacked fast path: torch.func.vmap over the
    single run's own loss code, the path any batchable task takes without a fast path."""
    base = ["+experiment=vardrop_mnist", "tier=smoke", "arm=bernoulli"]
    records = run_seeds([*base, "seeds=[0,1]", "seed_batching=vmap"], tmp_path / "b")
    assert records[0].provenance.seed_batch["step"] == "vmap"
    for rec in records:
        assert_same_run(rec, run_cfg([*base, f"seed={rec.seed}"], tmp_path / "s"))


def test_noise_draws_are_the_single_runs():
    """Drawing the noise first and feeding it in computes bit for bit what the model's own
    draws compute, and leaves the RNG where they leave it."""
    from experiments.variational_dropout.model import NOISE_KINDS, VariationalDropoutMLP

    x = torch.rand(8, 784)
    for kind in NOISE_KINDS:
        torch.manual_seed(1)
        model = VariationalDropoutMLP(hidden=(16, 16), noise=kind)
        state = torch.get_rng_state()
        inline = model(x)
        after = torch.get_rng_state()
        torch.set_rng_state(state)
        given = model(x, model.draw_noise(x))
        assert torch.equal(inline, given), kind
        assert torch.equal(after, torch.get_rng_state()), kind


@needs_mnist
def test_finished_seeds_are_skipped_and_the_rest_batched(tmp_path, capsys):
    base = ["+experiment=batchnorm_mnist", "tier=smoke", "arm=plain"]
    first = run_cfg([*base, "seed=1"], tmp_path)
    path = next(tmp_path.rglob("result.json"))
    mtime = path.stat().st_mtime_ns
    records = run_seeds([*base, "seeds=[0,1,2]"], tmp_path)
    assert "seed 1: already done" in capsys.readouterr().out
    assert [r.seed for r in records] == [0, 2]
    assert all(r.provenance.seed_batch["seeds"] == [0, 2] for r in records)
    assert path.stat().st_mtime_ns == mtime and read_record(path) == first
    assert run_seeds([*base, "seeds=[0,1,2]"], tmp_path) == []  # all done


@needs_mnist
def test_an_experiment_that_does_not_batch_runs_its_seeds_one_after_another(tmp_path, capsys):
    base = ["+experiment=batchnorm_mnist", "tier=smoke", "arm=plain", "seed_batching=false"]
    records = run_seeds([*base, "seeds=[0,1]"], tmp_path)
    assert "seeds not batched" in capsys.readouterr().out
    assert [r.seed for r in records] == [0, 1]
    assert all(r.provenance.seed_batch is None for r in records)
    assert all(r.variant is None for r in records)  # how it ran is not a setting


ENV = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}


def _records(root: Path) -> dict[int, dict]:
    return {
        rec["seed"]: rec
        for rec in (json.loads(p.read_text()) for p in sorted(root.rglob("result.json")))
    }


@needs_mnist
@pytest.mark.slow
@pytest.mark.parametrize(
    ("experiment", "arm"), [("batchnorm_mnist", "bn"), ("vardrop_mnist", "bernoulli")]
)
def test_a_killed_batched_run_resumes_to_the_uninterrupted_result(tmp_path, experiment, arm):
    base = [f"+experiment={experiment}", "tier=smoke", f"arm={arm}"]
    reference = {r.seed: r for r in run_seeds([*base, "seeds=[0,1]"], tmp_path / "ref")}
    runs = tmp_path / "killed"
    # `seeds=0,1` as a user types it (the CLI passes it on as a list)
    args = [
        sys.executable,
        "-m",
        "shortsci_bench",
        *base,
        "seeds=0,1",
        "threads=1",
        f"runs_dir={runs}",
    ]

    def cli(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*args, *extra], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600
        )

    killed = cli("debug.kill_at_step=20")  # after the checkpoint of the evaluation at step 20
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert not list(runs.rglob("result.json"))
    resumed = cli()
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming seeds [0, 1]" in resumed.stdout
    got = _records(runs)
    assert sorted(got) == [0, 1]
    for seed, rec in got.items():
        assert rec["status"] == "completed"
        assert rec["provenance"]["resumed_from"]
        assert _science(rec["metrics"]) == _science(reference[seed].metrics)  # bit for bit
        assert rec["history"] == reference[seed].model_dump()["history"]


def test_packing_never_asks_for_more_gpu_memory_than_is_free(monkeypatch):
    from shortsci_bench import packing

    monkeypatch.setattr(packing, "cores", lambda: 16)
    monkeypatch.setattr(packing, "gpu_memory_gib", lambda: [(10.0, 80.0)])
    jobs, why = packing.plan(job_memory_gb=2.0)
    assert jobs == 4 and "GiB" in why  # 10 x 0.9 / 2 = 4.5: 4 jobs, not 5
    assert packing.plan(job_memory_gb=20.0)[0] == 1  # under one job's worth: one job
    monkeypatch.setattr(packing, "cores", lambda: 2)
    assert packing.plan(job_memory_gb=1.0)[0] == 2  # the cores bound it
    monkeypatch.setattr(packing, "gpu_memory_gib", lambda: [])
    jobs, why = packing.plan(cpus_per_job=1)
    assert jobs == 2 and why.startswith("no GPU")


def test_the_stacked_step_runs_uncaptured_on_any_device():
    """The step that bench/gpu_throughput.py captures as a CUDA graph (stacked losses,
    backward, optimizer step on static tensors) runs eagerly here, and its per-seed losses
    are each seed's own loss."""
    import torch.nn.functional as F

    from shortsci_bench.models.mlp import MLP
    from shortsci_bench.seedbatch import SeedBatchTask, SeedRNG
    from shortsci_bench.tasks.classification import ClassificationTask

    tasks = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        model = MLP(in_features=12, hidden=(8, 8), batchnorm=True, init_std=0.1)
        tasks.append(
            ClassificationTask(model, optimizer=lambda params: torch.optim.SGD(params, lr=0.1))
        )
    ens = SeedBatchTask(tasks, [0, 1, 2], [SeedRNG() for _ in tasks])
    x, y = torch.rand(3, 16, 12), torch.randint(0, 10, (3, 16))
    losses = ens.losses((x, y), None)
    assert ens.used == "stacked_losses"
    for i, task in enumerate(tasks):
        own = F.cross_entropy(task.model(x[i]), y[i])
        assert torch.allclose(losses[i], own, rtol=1e-6, atol=1e-7)
    opt = torch.optim.SGD(list(ens.stacked), lr=0.1)
    before = [p.detach().clone() for p in ens.stacked]
    opt.zero_grad()
    losses.sum().backward()
    opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, ens.stacked))
    vm = SeedBatchTask(tasks, [0, 1, 2], [SeedRNG() for _ in tasks], how="vmap")
    assert torch.allclose(vm.losses((x, y), None), losses.detach(), rtol=1e-6, atol=1e-7)
    assert vm.used == "vmap"


@needs_mnist
@pytest.mark.parametrize("lr", ["1e6", "inf"])
def test_a_diverging_seed_ends_as_its_single_run_does(tmp_path, lr):
    """lr 1e6: the loss bound stops each seed at an evaluation; lr inf: a non-finite loss
    stops it at its first step. Each record is the single run's, `diverged` with its reason."""
    base = ["+experiment=batchnorm_mnist", "tier=smoke", "arm=bn"]
    base += [f"task.optimizer.lr={lr}", "eval_every=10"]
    records = run_seeds([*base, "seeds=[0,1]"], tmp_path / "b")
    for rec in records:
        single = run_cfg([*base, f"seed={rec.seed}"], tmp_path / "s")
        assert rec.status == single.status == "diverged"
        assert [r["step"] for r in rec.history] == [r["step"] for r in single.history]
        if lr == "inf":  # stopped at the first step: nothing chaotic happened yet
            assert rec.error == single.error
            assert_same_run(rec, single)
        else:  # a loss blown up to ~1e7 amplifies reassociation: same stop, other digits
            digits = re.compile(r"\d[\d.e+-]*")
            assert digits.sub("N", rec.error) == digits.sub("N", single.error)
