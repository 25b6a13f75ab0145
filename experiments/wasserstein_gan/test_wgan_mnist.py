"""wgan_mnist: smoke runs of both arms on MNIST (history, FID and label-histogram metrics),
the loss-tracks-quality correlation on a hand-made history, the WGAN critic's clipping on the
MNIST networks, and a run killed mid-way that resumes bit for bit."""

from __future__ import annotations

import pytest
import torch

from shortsci_bench.tasks.gan import GANTask
from tests.conftest import assert_resumes_exactly, compose_cfg, mnist_available, run_cfg

SMOKE = ["+experiment=wgan_mnist", "tier=smoke", "logger=none"]
needs_mnist = pytest.mark.skipif(not mnist_available(), reason="MNIST not prepared")


@needs_mnist
@pytest.mark.parametrize("arm", ["wgan", "gan"])
def test_smoke_run_records_quality_history_and_correlation(tmp_path, arm):
    rec = run_cfg([*SMOKE, f"arm={arm}"], tmp_path)
    assert rec.status == "completed", rec.error
    assert [row["step"] for row in rec.history] == [5.0, 10.0, 15.0, 20.0]
    for row in rec.history:
        for key in ("critic/distance", "quality/fid", "quality/label_entropy", "quality/digits"):
            assert key in row, (key, row)
    for key in ("critic/quality_corr", "quality/fid", "quality/fid_best", "quality/digits"):
        assert key in rec.metrics, key
    assert -1 <= rec.metrics["critic/quality_corr"] <= 1
    assert 0 <= rec.metrics["quality/digits"] <= 10
    assert rec.metrics["quality/fid"] >= rec.metrics["quality/fid_best"] >= 0


def _task_with_history(rows):
    cfg = compose_cfg([*SMOKE, "arm=wgan"])
    from shortsci_bench.run import build_task

    task = build_task(cfg)
    assert isinstance(task, GANTask)
    task.history = [dict(r) for r in rows]
    return task


def test_quality_corr_is_spearman_of_the_critic_estimate_and_fid():
    """Hand case: W estimates (3, 2.5, 2.6, 1, 0.5) and FIDs (90, 70, 80, 40, 45).
    Ranks of W: (5, 3, 4, 2, 1); of FID: (5, 3, 4, 1, 2): d^2 sums to 2, so
    rho = 1 - 6 * 2 / (5 * 24) = 0.9 (positive: the estimate falls as the samples improve)."""
    w = [3.0, 2.5, 2.6, 1.0, 0.5]
    fid = [90.0, 70.0, 80.0, 40.0, 45.0]
    rows = [
        {"step": float(i), "critic/distance": a, "quality/fid": b}
        for i, (a, b) in enumerate(zip(w, fid))
    ]
    out = _task_with_history(rows).final_metrics()
    assert out["critic/quality_corr"] == pytest.approx(0.9)
    assert out["quality/fid_best"] == 40.0
    # an estimate that rises while the samples improve correlates negatively
    rows = [{**r, "critic/distance": -r["critic/distance"]} for r in rows]
    assert _task_with_history(rows).final_metrics()["critic/quality_corr"] == pytest.approx(-0.9)


def test_wgan_clips_the_mnist_critic_after_each_update_and_the_gan_does_not():
    from shortsci_bench.run import build_task

    for arm, clipped in (("wgan", True), ("gan", False)):
        cfg = compose_cfg([*SMOKE, f"arm={arm}"])
        task = build_task(cfg)
        with torch.no_grad():  # start outside the box, so clipping has work to do
            for p in task.model.critic.parameters():
                p.fill_(0.5)
        task.clip_critic()
        biggest = max(float(p.abs().max()) for p in task.model.critic.parameters())
        assert biggest == pytest.approx(cfg.task.clip if clipped else 0.5), arm


def test_an_update_leaves_the_box_and_the_next_clip_brings_the_critic_back():
    from shortsci_bench.run import build_task

    cfg = compose_cfg([*SMOKE, "arm=wgan"])
    task = build_task(cfg)
    x = torch.rand(cfg.dataset.batch_size, 784, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in task.model.critic.parameters():
            p.fill_(0.5)
    loss_fn = task.critic_loss
    task.clip_critic()
    opt = torch.optim.RMSprop(task.model.critic.parameters(), lr=1.0)
    fake = task.model.generator(torch.randn(len(x), task.model.z_dim)).detach()
    loss_fn(x, fake).backward()
    opt.step()
    assert max(float(p.abs().max()) for p in task.model.critic.parameters()) > cfg.task.clip
    task.clip_critic()
    assert max(float(p.abs().max()) for p in task.model.critic.parameters()) <= cfg.task.clip


@needs_mnist
@pytest.mark.slow  # two subprocess runs, about a minute: CI runs it (make test-slow)
def test_a_killed_wgan_mnist_run_resumes_bit_identically(tmp_path):
    """SIGKILL after step 12 (last checkpoint at step 10), then the same command: the record
    equals an uninterrupted run's, history and metrics (time aside)."""
    args = [*SMOKE, "arm=wgan"]
    assert_resumes_exactly(args, tmp_path, kill_at=12)
