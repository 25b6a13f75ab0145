"""Weight normalization (Salimans & Kingma 2016): the reparameterisation, the data-dependent
init, mean-only BN, the schedule, and a smoke run of `weightnorm_cifar`."""

from __future__ import annotations

import pytest
import torch

from experiments.weight_normalization.model import NORMS, NormalizedConv, WeightNormCNN
from experiments.weight_normalization.task import WeightNormSchedule
from shortsci_bench.data import mirror as mirror_mod
from tests.conftest import run_cfg


def test_weight_is_g_times_unit_direction():
    torch.manual_seed(0)
    layer = NormalizedConv(3, 5, 3, 1, "weightnorm")
    with torch.no_grad():
        layer.g.copy_(torch.tensor([0.5, 1.0, 2.0, 3.0, 4.0]))
    w = layer.weight()
    assert torch.allclose(w.flatten(1).norm(dim=1), layer.g)  # ||w|| = g, per output unit
    direction = layer.v / layer.v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    assert torch.allclose(w, layer.g.view(-1, 1, 1, 1) * direction)
    x = torch.randn(2, 3, 6, 6)
    before = layer(x)
    with torch.no_grad():
        layer.v.mul_(7.0)  # the output depends on v only through its direction
    assert torch.allclose(layer(x), before, atol=1e-5)
    # the gradient with respect to v is orthogonal to v (section 2.1)
    layer(x).sum().backward()
    v_dot_grad = (layer.v.grad * layer.v).flatten(1).sum(1)
    assert torch.allclose(v_dot_grad, torch.zeros(5), atol=1e-4)


@pytest.mark.parametrize("norm", [n for n in NORMS if n != "batchnorm"])
def test_data_dependent_init_gives_zero_mean_unit_variance_features(norm):
    torch.manual_seed(0)
    net = WeightNormCNN(norm=norm, width=0.125, input_noise=0.0, dropout=0.0)
    x = torch.randn(64, 3, 32, 32)
    raw = net.pre_activations(x)
    assert not all(t.std().item() == pytest.approx(1, abs=0.1) for t in raw)
    net.data_dependent_init(x)
    for t in net.pre_activations(x):  # every layer, the logits included
        mean, std = t.mean(dim=(0, 2, 3)), t.std(dim=(0, 2, 3), correction=0)
        assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-4)
        assert torch.allclose(std, torch.ones_like(std), atol=1e-3)


def test_init_sets_g_and_b_from_the_batch_statistics():
    torch.manual_seed(0)
    layer = NormalizedConv(3, 4, 3, 1, "weightnorm", activation=False)
    x = torch.randn(32, 3, 8, 8)
    t = torch.nn.functional.conv2d(x, layer.weight(), padding=1)  # g = 1: t = v.x / ||v||
    mu, sigma = t.mean(dim=(0, 2, 3)), t.std(dim=(0, 2, 3), correction=0)
    layer.initializing = True
    layer(x)
    assert torch.allclose(layer.g, 1 / sigma, rtol=1e-4)
    assert torch.allclose(layer.b, -mu / sigma, rtol=1e-4, atol=1e-6)


def test_mean_only_batchnorm_centres_without_scaling():
    torch.manual_seed(0)
    layer = NormalizedConv(3, 4, 3, 1, "meanonly_bn", activation=False)
    with torch.no_grad():
        layer.b.copy_(torch.tensor([0.0, 1.0, -2.0, 3.0]))
    x = torch.randn(16, 3, 8, 8) + 2.0
    t = layer(x)
    assert torch.allclose(t.mean(dim=(0, 2, 3)), layer.b, atol=1e-5)
    raw = torch.nn.functional.conv2d(x, layer.weight(), padding=1)
    assert torch.allclose(t.std(dim=(0, 2, 3)), raw.std(dim=(0, 2, 3)), rtol=1e-4)  # no division
    assert torch.allclose(layer.running_mean, 0.1 * raw.mean(dim=(0, 2, 3)), atol=1e-5)
    layer.eval()  # test time: the running mean, not the batch's
    assert torch.allclose(
        layer(x), raw - layer.running_mean.view(1, -1, 1, 1) + layer.b.view(1, -1, 1, 1), atol=1e-5
    )


def test_schedule_holds_then_decays_linearly_and_switches_beta1():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=0.001)
    sched = WeightNormSchedule(opt, total_steps=100)
    lrs, betas = [], []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        betas.append(opt.param_groups[0]["betas"][0])
        opt.step()
        sched.step()
    assert lrs[0] == lrs[49] == pytest.approx(0.001)
    assert lrs[75] == pytest.approx(0.0005) and lrs[99] == pytest.approx(0.00002)
    assert betas[49] == 0.9 and betas[50] == 0.5


def test_architecture_follows_the_paper():
    net = WeightNormCNN(norm="batchnorm", width=1.0)
    chans = [lay.v.shape[0] for lay in net.layers]
    assert chans == [96, 96, 96, 192, 192, 192, 192, 192, 192, 10]
    kernels = [lay.v.shape[-1] for lay in net.layers]
    assert kernels == [3, 3, 3, 3, 3, 3, 3, 1, 1, 1]
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


needs_cifar = pytest.mark.skipif(
    mirror_mod.default_mirror() is None or not (mirror_mod.default_mirror() / "cifar10").is_dir(),  # type: ignore[operator]
    reason="no ../shared/data/cifar10 mirror",
)


@needs_cifar
def test_smoke_run_records_error_loss_and_time_per_update(tmp_path):
    rec = run_cfg(["+experiment=weightnorm_cifar", "tier=smoke", "arm=weightnorm"], tmp_path)
    assert rec.status == "completed"
    m = rec.metrics
    assert 0.0 <= m["test/err"] <= 1.0 and m["time/step_s"] > 0
    losses = [row["train/loss"] for row in rec.history]
    assert m["train/loss_mean"] == pytest.approx(sum(losses) / len(losses))
    assert rec.provenance.data["source"] == "subset_lossless" and rec.provenance.data["zca"]
