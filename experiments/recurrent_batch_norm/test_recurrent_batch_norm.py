"""bnlstm_seqmnist: per-time-step batch norm, the BN-LSTM, population statistics at test
time, the gradient-flow probe, the pixel-sequence data, and smoke runs of every arm."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from experiments.recurrent_batch_norm.model import (
    BNLSTM,
    BNTanhRNN,
    SequenceBatchNorm,
    batch_statistics,
    estimate_population_statistics,
    hidden_gradient_norms,
    log10_ratio,
)
from shortsci_bench.config import resolve_tier
from shortsci_bench.data.sequential_mnist import (
    SequentialMNISTDataModule,
    pixel_permutation,
    pixel_sequences,
)
from tests.conftest import compose_cfg, needs_mnist, run_cfg

torch.set_num_threads(1)


# --- per-time-step batch normalization --------------------------------------------------
def test_training_normalizes_each_step_over_the_batch():
    bn = SequenceBatchNorm(5, max_steps=3, gamma_init=0.1)
    x = torch.randn(16, 5) * 3 + 2
    bn.new_sequence()
    out = bn(x, t=1)
    torch.testing.assert_close(out.mean(0), torch.zeros(5), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.std(0, unbiased=False), torch.full((5,), 0.1), atol=1e-4, rtol=0)
    # only step 1's statistics moved (momentum 0.1 from mean 0, var 1)
    torch.testing.assert_close(bn.running_mean[1], 0.1 * x.mean(0))
    assert torch.all(bn.running_mean[[0, 2]] == 0)


def test_population_statistics_are_per_step_and_reused_beyond_the_last():
    bn = SequenceBatchNorm(4, max_steps=3, gamma_init=1.0, momentum=None)
    xs = torch.randn(8, 3, 4) * torch.tensor([1.0, 2.0, 3.0])[None, :, None]
    bn.new_sequence()
    bn.forward_sequence(xs)
    torch.testing.assert_close(bn.running_mean, xs.mean(0))
    torch.testing.assert_close(bn.running_var, xs.var(0))  # unbiased, as nn.BatchNorm1d
    bn.eval()
    probe = torch.randn(2, 4)
    expected = (probe - bn.running_mean[2]) / torch.sqrt(bn.running_var[2] + bn.eps)
    for t in (2, 3, 10):  # the last training step's statistics serve every later step
        torch.testing.assert_close(bn(probe, t), expected)
    long = torch.randn(2, 6, 4)
    stepwise = torch.stack([bn(long[:, t], t) for t in range(6)], dim=1)
    torch.testing.assert_close(bn.forward_sequence(long), stepwise)


def test_sequence_and_stepwise_forms_agree_in_training():
    a = SequenceBatchNorm(4, max_steps=5, momentum=None)
    b = SequenceBatchNorm(4, max_steps=5, momentum=None)
    x = torch.randn(10, 5, 4)
    a.new_sequence()
    b.new_sequence()
    together = a.forward_sequence(x)
    stepwise = torch.stack([b(x[:, t], t) for t in range(5)], dim=1)
    torch.testing.assert_close(together, stepwise)
    torch.testing.assert_close(a.running_var, b.running_var)


# --- the BN-LSTM ------------------------------------------------------------------------
def test_bnlstm_has_separate_norms_and_the_papers_init():
    net = BNLSTM(input_size=1, hidden=8, max_steps=5, gamma_init=0.1)
    assert net.bn_x is not net.bn_h
    assert net.bn_x.weight.shape == (32,) and net.bn_c.weight.shape == (8,)
    for norm in net.norms():
        assert torch.all(norm.weight == 0.1)
    torch.testing.assert_close(net.W_h[:, :8], torch.eye(8))  # identity block
    block = net.W_h[:, 8:]
    torch.testing.assert_close(block @ block.T, torch.eye(8), atol=1e-5, rtol=0)  # orthogonal
    assert torch.all(net.bias[8:16] == 1.0)  # forget gate
    assert BNLSTM(hidden=8, gamma_init=1.0).bn_h.weight[0] == 1.0
    assert not any(isinstance(m, SequenceBatchNorm) for m in BNLSTM(batchnorm=False).modules())


def _toy_sequences(n: int, steps: int = 12, seed: int = 0):
    """Class = which half of the sequence carries a bump: needs memory across steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = 0.3 * torch.rand(n, steps, 1, generator=g)
    half = steps // 2
    for i in range(n):
        start = 0 if y[i] == 0 else half
        x[i, start : start + half] += 0.7
    return x, y


def test_evaluation_uses_population_statistics_and_matches_batch_statistics():
    torch.manual_seed(0)
    net = BNLSTM(input_size=1, hidden=16, n_classes=2, max_steps=12, h0_noise=0.1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, y = _toy_sequences(512)
    for step in range(60):
        xb, yb = x[(step * 64) % 512 :][:64], y[(step * 64) % 512 :][:64]
        opt.zero_grad()
        F.cross_entropy(net(xb), yb).backward()
        opt.step()
    batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, 512, 64)]
    assert estimate_population_statistics(net, batches) == 8
    assert net.training  # mode restored
    net.eval()
    xt, yt = _toy_sequences(400, seed=1)
    with torch.no_grad():
        acc_pop = (net(xt).argmax(-1) == yt).float().mean().item()
        with batch_statistics(net):
            acc_batch = (net(xt).argmax(-1) == yt).float().mean().item()
        # population statistics: an example's output does not depend on its batch-mates
        alone = net(xt[:1])
        torch.testing.assert_close(alone, net(xt[:50])[:1], atol=1e-5, rtol=0)
        with batch_statistics(net):
            assert not torch.allclose(net(xt[:2])[:1], net(xt[:50])[:1], atol=1e-3)
    assert acc_batch > 0.9
    assert abs(acc_pop - acc_batch) < 0.05, (acc_pop, acc_batch)


def test_population_estimate_is_the_plain_average_of_batch_statistics():
    torch.manual_seed(0)
    net = BNLSTM(input_size=1, hidden=4, max_steps=3)
    batches = [(torch.rand(8, 3, 1), None) for _ in range(3)]
    estimate_population_statistics(net, batches)
    pre = torch.stack([xb @ net.W_x for xb, _ in batches])  # (batches, 8, 3, 16)
    torch.testing.assert_close(net.bn_x.running_mean, pre.mean(1).mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(net.bn_x.running_var, pre.var(1).mean(0), atol=1e-6, rtol=0)


def test_noise_on_h0_tames_blank_leading_steps():
    """The paper's pitfall: identical leading inputs give zero per-step variance and an
    exploding gradient; Gaussian noise on h_0 (their fix) keeps it finite and moderate."""
    x = torch.rand(32, 60, 1)
    x[:, :30] = 0.0  # blank, like the top rows of an MNIST digit
    y = torch.randint(0, 10, (32,))
    norms = {}
    for noise in (0.0, 0.1):
        torch.manual_seed(1)
        net = BNLSTM(hidden=16, max_steps=60, h0_noise=noise)
        norms[noise] = hidden_gradient_norms(net, x, y, seed=0)
    assert not (log10_ratio(norms[0.0][0].item(), norms[0.0][-1].item()) < 10)
    assert abs(log10_ratio(norms[0.1][0].item(), norms[0.1][-1].item())) < 3


def test_gamma_one_makes_the_gradient_vanish_in_the_papers_bn_tanh_rnn():
    """Figure 1(a): through a BN tanh RNN the gradient vanishes back in time at gamma 1
    and stays near its size at gamma 0.1."""
    x, y = torch.rand(32, 100, 1), torch.randint(0, 10, (32,))
    ratio = {}
    for gamma in (0.1, 1.0):
        torch.manual_seed(1)
        rnn = BNTanhRNN(hidden=32, gamma_init=gamma, h0_noise=0.1, max_steps=100)
        norms = hidden_gradient_norms(rnn, x, y, seed=0)
        ratio[gamma] = log10_ratio(norms[0].item(), norms[-1].item())
    assert ratio[1.0] < -5 and abs(ratio[0.1]) < 1.5, ratio


def test_gradient_probe_leaves_model_and_random_state_alone():
    net = BNLSTM(hidden=8, max_steps=10, h0_noise=0.1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.rand(6, 10, 1), torch.randint(0, 10, (6,))
    rng = torch.get_rng_state()
    norms = hidden_gradient_norms(net, x, y)
    assert norms.shape == (10,) and torch.all(torch.isfinite(norms))
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_log10_ratio_survives_underflow():
    assert log10_ratio(0.0, 1.0) < -300 and math.isfinite(log10_ratio(0.0, 1.0))


# --- data ---------------------------------------------------------------------------------
def test_pixel_sequences_scan_order_downsampling_and_permutation():
    images = torch.arange(2 * 784, dtype=torch.float32).view(2, 784)
    seq = pixel_sequences(images)
    assert seq.shape == (2, 784, 1) and torch.equal(seq[0, :, 0], images[0])
    small = pixel_sequences(images, downsample=4)
    assert small.shape == (2, 49, 1)
    assert small[0, 0, 0] == images[0].view(28, 28)[:4, :4].mean()
    perm = pixel_permutation(784, seed=0)
    assert torch.equal(perm, pixel_permutation(784, seed=0))
    assert torch.equal(perm.sort().values, torch.arange(784))
    assert torch.equal(pixel_sequences(images, permutation=perm)[1, :, 0], images[1, perm])


def test_datamodule_splits_on_tiny_mnist(tiny_mnist):
    dm = SequentialMNISTDataModule(
        root=str(tiny_mnist), download=False, n_val=50, downsample=4, permuted=True
    )
    dm.setup()
    assert dm.train[0].shape == (150, 49, 1) and dm.val[0].shape == (50, 49, 1)
    assert dm.test[0].shape == (100, 49, 1)
    x, y = dm.probe_batch(10, full_length=True)
    assert x.shape == (10, 784, 1) and torch.equal(y, dm.train[1][:10])
    prov = dm.provenance()
    assert prov["sequence_length"] == 49 and len(prov["permutation_sha256"]) == 64
    assert len(dm.statistics_batches(2)) == 2


@pytest.mark.parametrize("experiment", ["bnlstm_seqmnist", "bnlstm_pmnist"])
def test_every_tier_trains_on_the_length_its_model_keeps_statistics_for(experiment):
    for tier in ("smoke", "quick", "paper"):
        cfg = compose_cfg([f"+experiment={experiment}", f"tier={tier}"])
        resolve_tier(cfg)
        assert cfg.model.max_steps == (28 // cfg.dataset.downsample) ** 2
        assert cfg.dataset.permuted == (experiment == "bnlstm_pmnist")
    paper = compose_cfg([f"+experiment={experiment}", "tier=paper"])
    resolve_tier(paper)
    assert paper.dataset.downsample == 1 and paper.model.hidden == 100
    assert paper.trainer.gradient_clip_val == 1.0 and paper.task.optimizer.lr == 1e-3


# --- end to end -----------------------------------------------------------------------
@needs_mnist
@pytest.mark.parametrize(
    "experiment,arm",
    [
        ("bnlstm_seqmnist", "lstm"),
        ("bnlstm_seqmnist", "bnlstm"),
        ("bnlstm_seqmnist", "bnlstm_gamma1"),
        ("bnlstm_pmnist", "bnlstm"),
    ],
)
def test_smoke_run_of_each_arm(experiment, arm, tmp_path):
    record = run_cfg([f"+experiment={experiment}", f"arm={arm}", "tier=smoke"], tmp_path)
    assert record.status == "completed"
    for key in ("test/acc", "val/acc_mean", "test/acc_batch_stats"):
        assert 0.0 <= record.metrics[key] <= 1.0, key
    for key in ("gradflow/log10_first_over_last", "gradflow_rnn/log10_first_over_last"):
        assert math.isfinite(record.metrics[key]), key
    assert record.metrics["gradflow/steps"] == 49
    assert record.provenance.data["permuted"] == (experiment == "bnlstm_pmnist")
