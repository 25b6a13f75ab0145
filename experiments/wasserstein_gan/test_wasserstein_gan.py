"""wgan_mixture: the sample-quality measures against hand-computed cases, the WGAN step
(clipping, one global step per generator update), smoke runs of both arms, and a GAN run
killed mid-way that resumes bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from experiments.wasserstein_gan.data import RingOfGaussiansDataModule, sample_ring
from shortsci_bench.eval import samples
from tests.conftest import assert_resumes_exactly, compose_cfg, run_cfg

SMOKE = ["+experiment=wgan_mixture", "tier=smoke", "logger=none"]


def test_sliced_w1_of_a_shift_is_the_mean_projected_shift():
    """Shifting a sample by v moves every 1-D projection by <v, theta> exactly."""
    a = torch.randn(500, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = torch.tensor([0.3, -1.2], dtype=torch.float64)
    dirs = samples.projections(2, 64)
    expected = float((v @ dirs).abs().mean())
    assert samples.sliced_wasserstein(a, a + v, dirs) == pytest.approx(expected, rel=1e-12)
    assert samples.sliced_wasserstein(a, a.flip(0), dirs) == 0.0  # order does not matter


def test_mode_coverage_counts_covered_and_collapsed_samples():
    centres = samples.ring_modes(8, 2.0)
    g = torch.Generator().manual_seed(1)
    spread = sample_ring(800, 8, 2.0, 0.02, g)
    assert samples.mode_coverage(spread, centres, 0.25)["modes"] == 8
    assert samples.near_modes(spread, centres, 0.2) == 1.0
    # blurred but spread over the ring: still covers every mode, though few points are near one
    blurred = sample_ring(800, 8, 2.0, 0.3, g)
    assert samples.mode_coverage(blurred, centres, 0.25)["modes"] == 8
    assert samples.near_modes(blurred, centres, 0.2) < 0.5
    collapsed = centres[3].float() + 0.02 * torch.randn(800, 2, generator=g)
    cover = samples.mode_coverage(collapsed, centres, 0.25)
    assert cover == {"modes": 1.0, "top_mode_share": 1.0}
    # 7 modes full and one with 20 points: fair share 720 / 8 = 90, a quarter 22.5 > 20
    seven = centres[:7].float().repeat_interleave(100, 0) + 0.02 * torch.randn(700, 2, generator=g)
    x = torch.cat([seven, centres[7].float().expand(20, 2)])
    assert samples.mode_coverage(x, centres, 0.25)["modes"] == 7
    # a blob at the ring's centre counts for no mode
    blob = 0.1 * torch.randn(100, 2, generator=g)
    assert samples.mode_coverage(blob, centres, 0.25) == {"modes": 0.0, "top_mode_share": 0.0}


def test_spearman_matches_hand_computed_ranks():
    assert samples.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert samples.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks (1,2,3,4) vs (2,1,4,3): d = (1,1,1,1), rho = 1 - 6*4 / (4*15) = 0.6
    assert samples.spearman([0.1, 0.2, 0.3, 0.4], [5, 1, 9, 7]) == pytest.approx(0.6)
    assert math.isnan(samples.spearman([1, 1, 1], [1, 2, 3]))


def test_frechet_distance_of_diagonal_gaussians():
    """For commuting covariances: ||mu1 - mu2||^2 + sum (sqrt(a) - sqrt(b))^2."""
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = 1 + 0 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0
    d = samples.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert d == pytest.approx(expected, rel=1e-10)
    rng = np.random.default_rng(0)
    m = rng.normal(size=(4, 4))
    cov = m @ m.T + np.eye(4)
    assert samples.frechet_distance(mu1[:1].repeat(4), cov, mu1[:1].repeat(4), cov) == (
        pytest.approx(0.0, abs=1e-9)
    )
    other = cov + np.diag([0.5, 0.0, 0.0, 2.0])
    assert samples.frechet_distance(mu1, cov[:3, :3], mu2, other[:3, :3]) == pytest.approx(
        samples.frechet_distance(mu2, other[:3, :3], mu1, cov[:3, :3]), rel=1e-9
    )


def test_training_batches_depend_only_on_seed_and_step():
    dm = RingOfGaussiansDataModule(batch_size=8, batches_per_step=5, steps=4, seed=3)
    first, again = list(dm.train_dataloader()), list(dm.train_dataloader())
    assert [b.shape for b in first] == [(40, 2)] * 4
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    other = list(
        RingOfGaussiansDataModule(batch_size=8, batches_per_step=5, steps=4).train_dataloader()
    )
    assert not torch.equal(first[0], other[0])


@pytest.mark.parametrize("arm", ["wgan", "gan"])
def test_smoke_run_counts_one_step_per_generator_update(tmp_path, arm):
    rec = run_cfg([*SMOKE, f"arm={arm}"], tmp_path)
    assert rec.status == "completed", rec.error
    assert [row["step"] for row in rec.history] == [5.0, 10.0, 15.0, 20.0]
    for key in ("critic/distance", "critic/quality_corr", "quality/sw1", "quality/modes"):
        assert key in rec.metrics, key
    assert 0 <= rec.metrics["quality/modes"] <= 8


def test_wgan_critic_weights_stay_clipped_and_the_gan_is_not_clipped():
    from shortsci_bench.run import build_task

    torch.manual_seed(0)
    for arm, clipped in (("wgan", True), ("gan", False)):
        cfg = compose_cfg([*SMOKE, f"arm={arm}"])
        task = build_task(cfg)
        with torch.no_grad():  # start outside the box, so clipping has work to do
            for p in task.model.critic.parameters():
                p.mul_(0).add_(0.5)
        task.clip_critic()
        inside = (
            all(p.abs().max() <= cfg.task.clip for p in task.model.critic.parameters())
            if clipped
            else all(p.abs().max() == 0.5 for p in task.model.critic.parameters())
        )
        assert inside, arm


@pytest.mark.slow  # two subprocess runs; GANTask's resume stays in make test through infogan's
def test_a_killed_gan_run_resumes_bit_identically(tmp_path):
    """SIGKILL after step 12 (last checkpoint at step 10), then the same command: the record
    equals an uninterrupted run's, history and metrics (time aside)."""
    args = [*SMOKE, "arm=wgan"]
    assert_resumes_exactly(args, tmp_path, kill_at=12)
