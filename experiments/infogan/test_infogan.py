"""infogan_mnist: the networks' shapes, the latent code sampling, the information term (by
hand, and absent from D and G in the plain GAN arm), smoke runs of both arms and a killed run
that resumes bit for bit. The MI lower bound itself is tested on a channel of known mutual
information in tests/ (shortsci_bench.eval.samples)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from experiments.infogan.model import InfoGAN
from tests.conftest import assert_resumes_exactly, compose_cfg, run_cfg

SMOKE = ["+experiment=infogan_mnist", "tier=smoke", "logger=none"]
TINY = dict(g_fc=16, g_ch=8, g_ch2=4, d_ch=4, d_ch2=8, d_fc=16, q_hidden=8)


def smoke_task(arm: str):
    from shortsci_bench.run import build_task

    return build_task(compose_cfg([*SMOKE, f"arm={arm}"]))


def test_networks_shapes_and_the_shared_trunk():
    torch.manual_seed(0)
    m = InfoGAN(**TINY)
    assert m.z_dim == 62 + 10 + 2
    x = m.generator(torch.rand(5, m.z_dim))
    assert x.shape == (5, 784) and x.min() >= 0 and x.max() <= 1  # sigmoid pixels
    assert m.critic(x).shape == (5,)
    logits, mu = m.recognise(x)
    assert logits.shape == (5, 10) and mu.shape == (5, 2)
    # Q reads D's trunk: the trunk's parameters are Q's too, and D's head is not
    q_grads = torch.autograd.grad(
        m.recognise(x)[0].sum(), list(m.critic.parameters()), allow_unused=True
    )
    named = [n for n, _ in m.critic.named_parameters()]
    assert all(g is not None for n, g in zip(named, q_grads) if n.startswith("trunk."))
    assert all(g is None for n, g in zip(named, q_grads) if n.startswith("head."))
    full = InfoGAN()  # the paper's widths
    assert (
        full.critic.trunk.net[1].out_channels == 64 and full.critic.trunk.net[3].out_channels == 128
    )
    assert full.q.net[0].out_features == 128 and full.generator.net[0].out_features == 1024


def test_latent_sampling_is_one_hot_uniform_and_seeded():
    from shortsci_bench.data.batches import seeded_generator

    task = smoke_task("infogan")
    latent, cat, cont = task.sample_latent(20_000, seeded_generator(3, 7))
    assert latent.shape == (20_000, 74)
    z, onehot, c = latent[:, :62], latent[:, 62:72], latent[:, 72:]
    assert torch.equal(onehot, F.one_hot(cat, 10).float())
    assert torch.equal(c, cont)
    assert z.min() >= -1 and z.max() <= 1 and c.min() >= -1 and c.max() <= 1
    # uniform: each category 2000 +- 5 standard deviations (sd = sqrt(20000 * 0.1 * 0.9) = 42)
    counts = torch.bincount(cat, minlength=10)
    assert ((counts - 2000).abs() < 5 * 42.4).all(), counts
    assert abs(float(z.mean())) < 0.01 and abs(float(z.var()) - 1 / 3) < 0.01  # U(-1, 1)
    again = task.sample_latent(20_000, seeded_generator(3, 7))[0]
    other = task.sample_latent(20_000, seeded_generator(3, 8))[0]
    assert torch.equal(latent, again) and not torch.equal(latent, other)


def test_info_loss_is_cross_entropy_plus_unit_gaussian_error():
    task = smoke_task("infogan")
    torch.manual_seed(1)
    h = torch.randn(6, 16)
    cat, cont = torch.randint(0, 10, (6,)), torch.rand(6, 2) * 2 - 1
    task.model.eval()
    with torch.no_grad():
        logits, mu = task.model.q(h)
        loss = task.info_loss(h, cat, cont)
    by_hand = (
        -logits.log_softmax(1)[torch.arange(6), cat].mean() + 0.5 * ((cont - mu) ** 2).sum(1).mean()
    )
    assert float(loss) == pytest.approx(float(by_hand), rel=1e-6)


@pytest.mark.parametrize("arm", ["infogan", "gan"])
def test_the_information_term_reaches_d_and_g_only_in_the_infogan_arm(arm):
    """Two copies of a task that differ only in Q's weights: in the plain GAN arm D's and G's
    gradients are the same (no information term reaches them); with lambda = 1 they differ."""
    from shortsci_bench.data.batches import seeded_generator

    torch.manual_seed(0)
    a = smoke_task(arm)
    b = smoke_task(arm)
    b.model.load_state_dict(a.model.state_dict())
    with torch.no_grad():
        for p in b.model.q.parameters():
            p.add_(torch.randn_like(p))
    real = torch.rand(16, 784)
    lat = a.sample_latent(16, seeded_generator(0, 0))

    def grads(task, params, loss):
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(params))])

    gd = [grads(t, t.model.critic.parameters(), t.d_loss(real, *lat)[0]) for t in (a, b)]
    gg = [grads(t, t.model.generator.parameters(), t.g_loss(real, *lat)) for t in (a, b)]
    same = torch.allclose(gd[0], gd[1]) and torch.allclose(gg[0], gg[1])
    assert same == (arm == "gan")


@pytest.mark.parametrize("arm", ["infogan", "gan"])
def test_smoke_run_records_the_code_metrics(tmp_path, arm):
    rec = run_cfg([*SMOKE, f"arm={arm}"], tmp_path)
    assert rec.status == "completed", rec.error
    assert [row["step"] for row in rec.history] == [5.0, 10.0]
    m = rec.metrics
    for key in (
        "code/test_acc",
        "code/gen_acc",
        "info/mi_bound",
        "info/frac_to_bound",
        "quality/fid",
    ):
        assert key in m, key
    # best one-to-one matching is at least chance over 10 categories (>= 1/10 of any labels)
    assert 0.1 <= m["code/test_acc"] <= 1 and 0.1 <= m["code/gen_acc"] <= 1
    assert m["info/mi_bound"] <= math.log(10) + 1e-9
    assert m["info/frac_to_bound"] in (0.5, 1.0, 2.0)


def test_a_killed_infogan_run_resumes_bit_identically(tmp_path):
    """SIGKILL after step 7 (last checkpoint at step 5), then the same command: the record
    equals an uninterrupted run's, history and metrics (time aside)."""
    args = [*SMOKE, "arm=infogan"]
    assert_resumes_exactly(args, tmp_path, kill_at=7)
