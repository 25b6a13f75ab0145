"""disentangle_mnist: the triplet sampler, the swap layout of the losses (by hand, with stub
networks that pass their inputs through), the swap scores, the linear probe on features
whose answer is known, the adversarial term present only in its arm, smoke runs of both arms
and a killed run that resumes bit for bit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from experiments.disentangling_adversarial.data import ClassSampler
from experiments.disentangling_adversarial.model import DisentanglingAE
from experiments.disentangling_adversarial.task import probe_accuracy, swap_scores
from tests.conftest import assert_resumes_exactly, compose_cfg, run_cfg

SMOKE = ["+experiment=disentangle_mnist", "tier=smoke", "logger=none"]


def smoke_task(arm: str):
    from shortsci_bench.run import build_task

    return build_task(compose_cfg([*SMOKE, f"arm={arm}"]))


def test_networks_shapes():
    torch.manual_seed(0)
    m = DisentanglingAE(nf=2, s_dim=3, z_dim=5)
    x = torch.rand(4, 784) * 2 - 1
    s, mu, logvar = m.encoder(x)
    assert s.shape == (4, 3) and mu.shape == (4, 5) and logvar.shape == (4, 5)
    out = m.decoder(s, mu)
    assert out.shape == (4, 784) and out.abs().max() <= 1  # tanh pixels
    assert m.discriminator(out, torch.tensor([0, 1, 2, 9])).shape == (4,)
    # the class is an input of D: another class, another score
    m.eval()
    d = m.discriminator(out, torch.zeros(4, dtype=torch.long))
    with torch.no_grad():
        m.discriminator.luts[0].weight.normal_()
    assert not torch.allclose(d, m.discriminator(out, torch.ones(4, dtype=torch.long)))


def test_triplets_pair_x1_x2_by_class_and_are_seeded():
    from shortsci_bench.data.batches import seeded_generator

    labels = torch.arange(1000) % 10
    sampler = ClassSampler(labels)
    idx = sampler.triplets(500, seeded_generator(0, 3))
    y1, y2, y3 = labels[idx].split(500)
    assert torch.equal(y1, y2)  # x1 and x2 share the class
    assert (y1 != y3).float().mean() > 0.8  # x3's class is drawn independently (0.9 expected)
    assert (idx[:500] != idx[500:1000]).float().mean() > 0.9  # x2 is another image, mostly
    # uniform over the classes: 1000 draws of y1 and y3, each class 100 +- 5 sd (sd = 9.5)
    counts = torch.bincount(torch.cat([y1, y3]), minlength=10)
    assert ((counts - 100).abs() < 48).all(), counts
    assert torch.equal(idx, sampler.triplets(500, seeded_generator(0, 3)))
    assert not torch.equal(idx, sampler.triplets(500, seeded_generator(0, 4)))


class StubEncoder(nn.Module):
    """s = the first pixel (the image's number), z's mean = that + 100, z's variance 0."""

    def forward(self, x):
        s = x[:, :1]
        return s, s + 100, torch.full_like(s, -1e4)


class StubDecoder(nn.Module):
    """Records each decoding's (s, z) and returns the s value in every pixel."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, s, z):
        self.calls.append((s[:, 0].clone(), z[:, 0].clone()))
        return s[:, :1].expand(len(s), 784)


class StubDiscriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.classes = []

    def forward(self, x, y):
        self.classes.append(y.clone())
        return torch.zeros(len(x))


def test_swap_layout_by_hand():
    """Three triplets (images numbered 0..8: x1 = 0,1,2; x2 = 3,4,5; x3 = 6,7,8): the decoder
    sees every (s_i, z_i), then (s2, z1), (s1, z2), then (s2, z3), (s3, z2) with D told the
    classes of s2 and s3; the swap loss compares (s2, z1) with x1 and (s1, z2) with x2."""
    task = smoke_task("adversarial")
    task.model.encoder, task.model.decoder = StubEncoder(), StubDecoder()
    task.model.discriminator = StubDiscriminator()
    n = 3
    x = torch.arange(9.0)[:, None].expand(9, 784).clone()
    y = torch.tensor([4, 4, 4, 4, 4, 4, 7, 8, 9])
    eps = torch.randn(9, task.model.z_dim)
    loss, parts, fake = task.generator_losses(x, y, eps)
    (s, z) = task.model.decoder.calls[0]
    ids = torch.arange(9.0)
    x1, x2, x3 = ids[:n], ids[n : 2 * n], ids[2 * n :]
    want_s = torch.cat([ids, x2, x1, x2, x3])
    want_z = torch.cat([ids, x1, x2, x3, x2]) + 100
    assert torch.equal(s, want_s) and torch.equal(z, want_z)
    assert torch.equal(task.model.discriminator.classes[0], y[n:])  # classes of s2, s3
    assert torch.equal(fake[:, 0], torch.cat([x2, x3]))
    # reconstruction exact; swap error: (x2 - x1)^2 = 9 per pixel, both halves
    assert float(parts["rec"]) == 0 and float(parts["swap"]) == pytest.approx(9.0)
    # no adversary: only the reconstructions and the same-class swaps are decoded
    task.adv_weight = 0.0
    task.model.decoder.calls.clear()
    _, parts, fake = task.generator_losses(x, y, eps)
    assert fake is None and "adv" not in parts
    assert torch.equal(task.model.decoder.calls[0][0], torch.cat([ids, x2, x1]))


def test_swap_scores_by_hand():
    labels = torch.tensor([0, 1, 2, 2])
    perm = torch.tensor([1, 0, 3, 2])  # pairs (0 <- 1), (1 <- 0), (2 <- 3), (3 <- 2)
    differ = labels[perm] != labels  # the last two pairs share class 2: left out
    # decodings of (s from perm[i], z from i): 0 takes s's class 1, 1 keeps z's class 1
    predicted = torch.tensor([1, 1, 2, 2])
    out = swap_scores(predicted, labels, perm, differ)
    assert out == {"swap/class_transfer": 0.5, "swap/keeps_z_class": 0.5}


def test_the_probe_on_features_of_known_information():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (2000,), generator=g)
    noise = torch.randn(2000, 20, generator=g)
    # the class written in one of 20 dimensions: a linear probe reads it perfectly
    informative = noise.clone()
    informative[:, 7] = y.float() * 5
    one_hot = torch.cat([noise[:, :10], torch.nn.functional.one_hot(y, 10).float()], 1)
    assert probe_accuracy(one_hot[:1000], y[:1000], one_hot[1000:], y[1000:]) > 0.97
    # features independent of the class: chance (0.1, sd 0.0095 over 1000 test points)
    acc = probe_accuracy(noise[:1000], y[:1000], noise[1000:], y[1000:])
    assert 0.05 < acc < 0.16
    # one ordinal dimension is not linearly separable into 10 classes, but far above chance
    assert probe_accuracy(informative[:1000], y[:1000], informative[1000:], y[1000:]) > 0.3


@pytest.mark.parametrize("arm", ["adversarial", "no_adversary"])
def test_the_adversarial_term_reaches_the_decoder_only_in_its_arm(arm):
    """Two copies that differ only in D's weights: the generative model's gradients agree
    without the adversary and differ with it."""
    torch.manual_seed(0)
    a, b = smoke_task(arm), smoke_task(arm)
    b.model.load_state_dict(a.model.state_dict())
    with torch.no_grad():
        for p in b.model.discriminator.parameters():
            p.add_(torch.randn_like(p))
    x = torch.rand(12, 784) * 2 - 1
    y = torch.tensor([1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8])
    eps = torch.randn(12, a.model.z_dim)

    def grads(task):
        params = list(task.model.decoder.parameters())
        loss = task.generator_losses(x, y, eps)[0]
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])

    assert torch.allclose(grads(a), grads(b)) == (arm == "no_adversary")


@pytest.mark.parametrize("arm", ["adversarial", "no_adversary"])
def test_smoke_run_records_the_metrics(tmp_path, arm):
    rec = run_cfg([*SMOKE, f"arm={arm}"], tmp_path)
    assert rec.status == "completed", rec.error
    assert [row["step"] for row in rec.history] == [5.0, 10.0]
    m = rec.metrics
    for key in ("swap/class_transfer", "swap/keeps_z_class", "leak/z_acc", "probe/s_acc"):
        assert 0 <= m[key] <= 1, key
    assert m["swap/class_transfer"] + m["swap/keeps_z_class"] <= 1
    assert 0 < m["rec/mse"] < 1 and 0 <= m["rec/eval_acc"] <= 1


@pytest.mark.slow  # two subprocess runs, about a minute: CI runs it (make test-slow)
def test_a_killed_run_resumes_bit_identically(tmp_path):
    """SIGKILL after step 7 (last checkpoint at step 5), then the same command: the record
    equals an uninterrupted run's, history and metrics (time aside)."""
    args = [*SMOKE, "arm=adversarial"]
    assert_resumes_exactly(args, tmp_path, kill_at=7)


@pytest.mark.parametrize("tier", ["smoke", "quick", "paper"])
def test_every_tier_builds_its_optimizers(tier):
    """The tiers' optimizer overlays make working optimizers (the quick tier swaps D's)."""
    from shortsci_bench.run import build_task

    task = build_task(compose_cfg(["+experiment=disentangle_mnist", f"tier={tier}"]))
    gen, disc = task.configure_optimizers()
    want = torch.optim.Adam if tier == "quick" else torch.optim.SGD
    assert isinstance(gen, torch.optim.Adam) and type(disc) is want
    n_disc = sum(p.numel() for p in task.model.discriminator.parameters())
    assert sum(p.numel() for g in disc.param_groups for p in g["params"]) == n_disc
