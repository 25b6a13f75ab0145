"""vardrop_mnist: the KL approximation, the local reparameterization trick, the gradient
variance ordering, and every arm end to end at the smoke tier (on tiny real-format data)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from experiments.variational_dropout.model import (
    C1,
    C2,
    C3,
    LRTLinear,
    VariationalDropoutMLP,
    gradient_variance,
    neg_kl_approx,
)
from experiments.variational_dropout.task import VariationalDropoutTask
from shortsci_bench.claims.schema import load_paper
from tests.conftest import REPO, run_cfg

ARMS = ("none", "bernoulli", "gaussian", "vardrop_a", "vardrop_b")


pytestmark = pytest.mark.usefixtures("one_thread")  # experiments/conftest.py


def test_kl_approximation_values():
    assert (C1, C2, C3) == (1.16145124, -1.50204118, 0.58629921)
    log_alpha = torch.log(torch.tensor([1.0, 0.5, 0.1], dtype=torch.float64))
    expected = [
        C1 + C2 + C3,  # 0.24570927
        0.5 * math.log(0.5) + C1 * 0.5 + C2 * 0.25 + C3 * 0.125,
        0.5 * math.log(0.1) + C1 * 0.1 + C2 * 0.01 + C3 * 0.001,
    ]
    got = neg_kl_approx(log_alpha)
    assert torch.allclose(got, torch.tensor(expected, dtype=torch.float64), atol=1e-12)
    assert got[0].item() == pytest.approx(0.24570927, abs=1e-8)


def test_kl_approximation_fits_the_exact_divergence():
    """-KL(N(t, a t^2) || log-uniform) = const + 0.5 log a - E log|1 + sqrt(a) eps|; the
    paper's cubic should match the expectation up to one constant on 0.1 <= a <= 1."""
    integrate = pytest.importorskip("scipy.integrate")

    def minus_e_log(a: float) -> float:
        s = math.sqrt(a)

        def density(e):
            return math.log(abs(1 + s * e)) * math.exp(-e * e / 2) / math.sqrt(2 * math.pi)

        pole = -1 / s  # an integrable log singularity: split the integral there
        left = integrate.quad(density, -np.inf, pole, limit=200)[0]
        right = integrate.quad(density, pole, np.inf, limit=200)[0]
        return -(left + right)

    alphas = np.linspace(0.1, 1.0, 10)
    exact = np.array([minus_e_log(a) for a in alphas])
    cubic = C1 * alphas + C2 * alphas**2 + C3 * alphas**3
    diff = exact - cubic
    assert np.abs(diff - diff.mean()).max() < 0.01


def test_kl_pushes_alpha_up_to_the_clip_and_stops_there():
    """d(-KL)/d(alpha) > 0 on (0, 1], so the KL term alone raises alpha; at the clip the
    gradient is zero: an alpha started at 1 never moves (hence alpha_init < alpha_max)."""
    layer = LRTLinear(4, 3, alpha_init=0.1)
    layer.neg_kl().backward()
    assert (layer.log_alpha.grad > 0).all()
    at_clip = LRTLinear(4, 3, alpha_init=0.5, alpha_max=1.0)
    with torch.no_grad():
        at_clip.log_alpha.fill_(0.0)
    at_clip.neg_kl().backward()
    assert (at_clip.log_alpha.grad == 0).all()
    with pytest.raises(ValueError, match="never moves"):
        VariationalDropoutMLP(hidden=[8], noise="vardrop_b", alpha_init=1.0)


def test_local_reparameterization_matches_sampled_weights():
    """The trick's pre-activations have the mean and variance of x W^T with W sampled
    from q(W): b ~ N(x theta^T + bias, x^2 (alpha theta^2)^T), for every estimator."""
    torch.manual_seed(0)
    layer = LRTLinear(6, 4, alpha_init=0.3).double()
    with torch.no_grad():
        layer.log_alpha.uniform_(math.log(0.05), math.log(0.9))
    x = torch.randn(1, 6, dtype=torch.float64).expand(20_000, 6)
    mean = (x[:1] @ layer.weight.T + layer.bias).squeeze(0)
    var = ((x[:1] ** 2) @ (layer.alpha() * layer.weight**2).T).squeeze(0)
    layer.train()
    with torch.no_grad():
        for estimator in ("lrt", "per_example"):
            layer.estimator = estimator
            out = layer(x)
            assert torch.allclose(out.mean(0), mean, atol=4 * (var / len(x)).sqrt().max())
            assert torch.allclose(out.var(0), var, rtol=0.05)
        layer.estimator = "shared"  # one sample per call: gather 2,000 calls of one example
        out = torch.cat([layer(x[:1]) for _ in range(2000)])
        assert torch.allclose(out.var(0), var, rtol=0.15)
    layer.eval()
    assert torch.allclose(layer(x[:1]).squeeze(0), mean)


def _small_net_and_batch(seed: int = 0, alpha: float = 0.5):
    torch.manual_seed(seed)
    net = VariationalDropoutMLP(
        in_features=64, hidden=[32, 32], out_features=10, noise="vardrop_b", alpha_init=alpha
    )
    centres = torch.rand(10, 64)  # ten "classes" of image-like inputs in [0, 1]
    y = torch.arange(50) % 10
    x = (centres[y] + 0.1 * torch.rand(50, 64)).clamp(0, 1)
    return net, x, y


def test_gradient_variance_ordering_at_init():
    """At initialisation the local trick has the lowest variance, for both layers."""
    net, x, y = _small_net_and_batch()
    var = {
        est: gradient_variance(net, x, y, est, draws=30) for est in ("lrt", "per_example", "shared")
    }
    for layer in ("top", "bottom"):
        assert var["lrt"][layer] < var["per_example"][layer]
        assert var["lrt"][layer] < var["shared"][layer]


def test_shared_sample_variance_does_not_average_out():
    """With B copies of one example, a shared weight sample gives every copy the same
    gradient (variance as for one example), separate samples average it down by B."""
    net, x, y = _small_net_and_batch()
    xb, yb = x[:1].expand(20, -1), y[:1].expand(20)
    shared = gradient_variance(net, xb, yb, "shared", draws=60)
    per_example = gradient_variance(net, xb, yb, "per_example", draws=60)
    for layer in ("top", "bottom"):
        assert 10 < shared[layer] / per_example[layer] < 40  # 20 in expectation


def test_gradient_variance_restores_the_model():
    net, x, y = _small_net_and_batch()
    net.eval()
    gradient_variance(net, x, y, "per_example", draws=2)
    assert not net.training
    assert all(m.estimator == "lrt" for m in net.modules() if isinstance(m, LRTLinear))
    with pytest.raises(ValueError, match="vardrop_b"):
        gradient_variance(VariationalDropoutMLP(hidden=[8], noise="gaussian"), x, y, "lrt")


@pytest.mark.parametrize("noise", ARMS)
def test_noise_kinds_train_and_evaluate_deterministically(noise):
    torch.manual_seed(0)
    net = VariationalDropoutMLP(in_features=12, hidden=[16, 16], out_features=3, noise=noise)
    x, y = torch.rand(8, 12), torch.randint(0, 3, (8,))
    loss = F.cross_entropy(net(x), y) + net.kl() / 1000
    loss.backward()
    learned = noise in ("vardrop_a", "vardrop_b")
    assert (net.kl().item() != 0) == learned
    net.eval()
    assert torch.equal(net(x), net(x))
    alphas = net.mean_alphas()
    assert len(alphas) == 3
    if noise in ("bernoulli", "gaussian"):
        assert alphas == pytest.approx([0.25, 1.0, 1.0])  # p = 0.2 on pixels, 0.5 hidden


def test_gradvar_state_travels_in_checkpoints():
    net, x, y = _small_net_and_batch()
    task = VariationalDropoutTask(net, optimizer=None, gradvar={"enabled": True, "draws": 2})
    task._gradvar_batch = (x, y)
    task.final_extra["gradvar/init_top_shared_over_lrt"] = 3.0
    ckpt: dict = {}
    task.on_save_checkpoint(ckpt)
    fresh = VariationalDropoutTask(net, optimizer=None, gradvar={"enabled": True, "draws": 2})
    fresh.on_load_checkpoint(ckpt)
    assert torch.equal(fresh._gradvar_batch[0], x)
    assert fresh.final_extra["gradvar/init_top_shared_over_lrt"] == 3.0


@pytest.mark.parametrize("arm", ARMS)
def test_smoke_run_writes_the_metrics_its_claims_read(arm, tiny_mnist: Path, tmp_path: Path):
    record = run_cfg(
        [
            "+experiment=vardrop_mnist",
            f"arm={arm}",
            "tier=smoke",
            "logger=none",
            f"dataset.root={tiny_mnist}",
            "dataset.download=false",
        ],
        tmp_path / "runs",
    )
    assert record is not None and record.status == "completed", record and record.error
    assert {"test/acc", "test/err"} <= set(record.metrics)
    paper = load_paper(REPO / "experiments" / "variational_dropout" / "claims.yaml")
    for claim in paper.claims:
        if claim.status != "active" or claim.experiment != "vardrop_mnist":
            continue
        sides = [claim.better, claim.worse] if claim.kind == "ordering" else [claim]
        for side in sides:
            if side.arm == arm:
                assert (side.metric or claim.metric) in record.metrics, claim.id
    if arm == "vardrop_b":
        for layer in ("top", "bottom"):
            for est in ("shared", "perexample"):
                assert record.metrics[f"gradvar/init_{layer}_{est}_over_lrt"] > 0
