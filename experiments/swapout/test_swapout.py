"""Swapout units (Singh et al. 2016): the special cases of Y = Theta1*X + Theta2*F(X), the
schedules, both inference modes, and a smoke run of `swapout_cifar`."""

from __future__ import annotations

import pytest
import torch

from experiments.swapout.model import SwapoutResNet, SwapoutUnit, keep_probabilities
from shortsci_bench.data import mirror as mirror_mod
from tests.conftest import run_cfg


def unit(kind: str = "swapout", keep: float = 0.5, project: bool = False) -> SwapoutUnit:
    torch.manual_seed(0)
    u = SwapoutUnit(4, 8 if project else 4, 2 if project else 1, kind, keep)
    return u.eval()  # BN on running statistics: F is a fixed function


@pytest.mark.parametrize("project", [False, True])
def test_all_one_masks_give_a_residual_unit_and_all_zero_masks_give_zero(project):
    u = unit(project=project)
    x = torch.randn(3, 4, 8, 8)
    shortcut, residual = u.branches(x)
    if not project:
        assert torch.equal(shortcut, x)  # the identity skip of a pre-activation unit
    ones, zeros = torch.ones_like(residual), torch.zeros_like(residual)
    assert torch.allclose(u(x, ones, ones), shortcut + residual)
    assert torch.equal(u(x, zeros, zeros), zeros)
    assert torch.allclose(u(x, ones, zeros), shortcut)  # skipped
    assert torch.allclose(u(x, zeros, ones), residual)  # feed-forward


@pytest.mark.parametrize("kind", ["swapout", "dropout", "stochastic_depth"])
def test_deterministic_inference_is_the_expectation_of_the_masks(kind):
    u = unit(kind, keep=0.7)
    x = torch.randn(4, 4, 8, 8)
    shortcut, residual = u.branches(x)
    theta1 = 1.0 if kind == "stochastic_depth" else 0.7
    expected = theta1 * shortcut + 0.7 * residual
    assert torch.allclose(u(x), expected, atol=1e-6)  # eval mode: masks -> keep probabilities
    assert torch.allclose(u(x, theta1, 0.7), expected, atol=1e-6)
    # stochastic inference: the mean over sampled masks converges to it
    torch.manual_seed(1)
    n = 4000
    s, r = shortcut[:1].expand(n, -1, -1, -1), residual[:1].expand(n, -1, -1, -1)
    t1, t2 = u.sample_masks(r)
    mean = (t1 * s + t2 * r).mean(0)
    assert torch.allclose(mean, expected[0], atol=0.05 * expected[0].abs().max().item())
    u.sample_in_eval = True
    xs = torch.randn(32, 4, 8, 8)
    assert not torch.allclose(u(xs), u(xs))


def test_mask_kinds():
    x = torch.zeros(64, 4, 8, 8)
    torch.manual_seed(2)
    t1, t2 = unit("swapout").sample_masks(x)
    assert set(t1.unique().tolist()) == {0.0, 1.0} and not torch.equal(t1, t2)
    assert abs(t1.mean().item() - 0.5) < 0.03  # independent per element
    t1, t2 = unit("dropout").sample_masks(x)
    assert t1 is t2  # one mask for both terms: dropout of the unit's output
    t1, t2 = unit("stochastic_depth").sample_masks(x)
    assert t1 == 1.0 and t2.shape == (64, 1, 1, 1)  # the whole branch, per example
    assert unit("none").sample_masks(x) == (1.0, 1.0)


def test_schedules_and_network():
    assert keep_probabilities(6, "linear", 0.5, 0.5) == pytest.approx([1, 0.9, 0.8, 0.7, 0.6, 0.5])
    assert keep_probabilities(3, "uniform", 0.5, 0.6) == [0.6] * 3
    net = SwapoutResNet(depth=14, width=0.5, kind="swapout", schedule="linear")
    assert len(net.units) == 6 and net.keeps[0] == 1.0 and net.keeps[-1] == 0.5
    assert [u.conv1.out_channels for u in net.units] == [8, 8, 16, 16, 32, 32]
    net.eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(net(x), net(x))  # deterministic inference
    with net.stochastic_inference():
        assert not torch.equal(net(x), net(x))
    assert torch.equal(net(x), net(x))  # the context restores it
    assert not SwapoutResNet(depth=8, kind="none").is_stochastic
    with pytest.raises(ValueError, match="6n"):
        SwapoutResNet(depth=10)


needs_cifar = pytest.mark.skipif(
    mirror_mod.default_mirror() is None or not (mirror_mod.default_mirror() / "cifar10").is_dir(),  # type: ignore[operator]
    reason="no ../shared/data/cifar10 mirror",
)


@needs_cifar
def test_smoke_run_records_both_inferences(tmp_path):
    rec = run_cfg(["+experiment=swapout_cifar", "tier=smoke", "arm=swapout_uniform"], tmp_path)
    assert rec.status == "completed"
    m = rec.metrics
    for key in ("test/err_det", "test/err_stoch", "test/acc_det", "test/acc_stoch"):
        assert 0.0 <= m[key] <= 1.0
    assert m["test/err_det"] == pytest.approx(1 - m["test/acc_det"])
    assert m["test/gap_det_minus_stoch"] == pytest.approx(m["test/err_det"] - m["test/err_stoch"])
    assert m["test/n_eval"] == 200 and m["test/stoch_samples"] == 3
    assert 0.0 <= m["test/err_stoch_n1"] <= 1.0  # the error of a single sampled pass
    assert rec.provenance.data["source"] == "subset_lossless"
    assert [row["step"] for row in rec.history] == [4.0, 8.0]
    assert "train/loss" in rec.history[-1]


@needs_cifar
def test_smoke_run_without_masks_is_deterministic(tmp_path):
    over = ["+experiment=swapout_cifar", "tier=smoke", "arm=resnet"]
    a = run_cfg(over, tmp_path / "a").metrics
    b = run_cfg(over, tmp_path / "b").metrics
    assert a["test/err_stoch"] == a["test/err_det"] and a["test/stoch_samples"] == 1
    drop = {"time/step_s", "time/eval_both_s"}
    assert {k: v for k, v in a.items() if k not in drop} == {
        k: v for k, v in b.items() if k not in drop
    }
