"""supcon_cifar: the SupCon loss against a hand computation on 4 examples, where L_out and
L_in agree and differ, the two views, the phases of training, and smoke runs."""

from __future__ import annotations

import math

import pytest
import torch

from experiments.supervised_contrastive.model import SmallConvEncoder, SupConNet, supcon_loss
from experiments.supervised_contrastive.task import SupConTask, cosine_in_phase
from shortsci_bench.data import mirror as mirror_mod
from tests.conftest import run_cfg


def _unit(angles_deg):
    a = torch.tensor(angles_deg, dtype=torch.double) * math.pi / 180
    return torch.stack([a.cos(), a.sin()], 1)


def _by_hand(z, labels, tau, placement):
    """The paper's equations, written as loops over anchors, positives and A(i)."""
    n, total, anchors = len(labels), 0.0, 0
    for i in range(n):
        others = [a for a in range(n) if a != i]
        pos = [p for p in others if labels[p] == labels[i]]
        if not pos:
            continue
        denom = sum(math.exp(float(z[i] @ z[a]) / tau) for a in others)
        ratios = [math.exp(float(z[i] @ z[p]) / tau) / denom for p in pos]
        if placement == "out":
            total += -sum(math.log(r) for r in ratios) / len(pos)
        else:
            total += -math.log(sum(ratios) / len(pos))
        anchors += 1
    return total / anchors


def test_four_examples_by_hand():
    """Anchor 0 (label 0) at 0 deg: positive 1 at 60 deg, negatives at 180 and 90 deg;
    tau = 0.5. Its term is -log(e^{cos60/0.5} / (e^{cos60/0.5} + e^{cos180/0.5} + e^{cos90/0.5}))."""
    z, labels, tau = _unit([0, 60, 180, 90]), torch.tensor([0, 0, 1, 1]), 0.5
    anchor0 = -math.log(math.exp(1.0) / (math.exp(1.0) + math.exp(-2.0) + math.exp(0.0)))
    terms = []
    for i in range(4):  # each anchor has exactly one positive here
        others = [a for a in range(4) if a != i]
        p = next(a for a in others if labels[a] == labels[i])
        denom = sum(math.exp(float(z[i] @ z[a]) / tau) for a in others)
        terms.append(-math.log(math.exp(float(z[i] @ z[p]) / tau) / denom))
    assert terms[0] == pytest.approx(anchor0)
    for placement in ("out", "in"):
        loss = supcon_loss(z, labels, tau, placement)
        assert float(loss) == pytest.approx(sum(terms) / 4, rel=1e-12)


def test_l_out_and_l_in_differ_with_several_positives():
    """Three views of class 0 and one of class 1: anchors of class 0 have two positives, so
    the log of a mean (L_in) is below the mean of logs (L_out) by Jensen; the class-1
    anchor has none and is left out."""
    z, labels, tau = _unit([0, 40, 100, 200]), torch.tensor([0, 0, 0, 1]), 0.2
    out, inside = supcon_loss(z, labels, tau, "out"), supcon_loss(z, labels, tau, "in")
    assert float(out) == pytest.approx(_by_hand(z, labels, tau, "out"), rel=1e-12)
    assert float(inside) == pytest.approx(_by_hand(z, labels, tau, "in"), rel=1e-12)
    assert float(inside) < float(out) - 1e-3


def test_gradients_are_finite_and_differ_between_placements():
    torch.manual_seed(0)
    raw = torch.randn(8, 5, dtype=torch.double, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3])  # class 3 has no positive
    grads = {}
    for placement in ("out", "in"):
        z = torch.nn.functional.normalize(raw, dim=1)
        (grads[placement],) = torch.autograd.grad(supcon_loss(z, labels, 0.1, placement), raw)
        assert torch.isfinite(grads[placement]).all()
    assert (grads["out"] - grads["in"]).abs().max() > 1e-6


def test_same_class_views_pulled_together_lower_the_loss():
    labels = torch.tensor([0, 0, 1, 1])
    close = supcon_loss(_unit([0, 10, 180, 190]), labels, 0.1)
    far = supcon_loss(_unit([0, 180, 90, 270]), labels, 0.1)
    assert float(close) < float(far)


def test_cosine_phase_schedule():
    f = cosine_in_phase(10, 4)
    assert [f(s) for s in (9, 10, 12, 14)] == [0.0, 1.0, pytest.approx(0.5), 0.0]


def test_network_shapes_and_unit_projections():
    net = SupConNet(SmallConvEncoder(widths=[4, 8]), feature_dim=8, projection_dim=6)
    x = torch.randn(3, 3, 32, 32)
    assert net(x).shape == (3, 10)
    torch.testing.assert_close(net.project(x).norm(dim=1), torch.ones(3))


def test_linear_phase_trains_only_the_classifier():
    """After pre-training, a step changes the classifier and leaves encoder, BN statistics
    and projection head as they were, even with weight decay and momentum."""
    from functools import partial

    torch.manual_seed(0)
    net = SupConNet(SmallConvEncoder(widths=[4, 8]), feature_dim=8)
    task = SupConTask(
        net,
        partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-4),
        loss="supcon_out",
        pretrain_steps=2,
        total_steps=4,
    )
    configured = task.configure_optimizers()
    opt, schedule = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    batch = (torch.randn(6, 3, 32, 32), torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2] * 2))
    for linear in (False, True):
        if linear:  # to step 2, where the classifier's cosine starts and the encoder's ends
            schedule.step(), schedule.step()
            assert [g["lr"] for g in opt.param_groups] == [0.0, 0.1]
        task.in_linear_phase = lambda linear=linear: linear
        before = {k: v.clone() for k, v in net.state_dict().items()}
        opt.zero_grad()
        task.training_step(batch, 0).backward()
        opt.step()
        changed = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
        if linear:
            assert changed == {"classifier.weight", "classifier.bias"}
        else:  # contrastive phase: encoder and head learn, the classifier does not
            assert not any(k.startswith("classifier") for k in changed)
            assert any(k.startswith("encoder") for k in changed)
            assert any(k.startswith("head") for k in changed)


needs_cifar = pytest.mark.skipif(  # as in experiments/swapout/test_swapout.py
    mirror_mod.default_mirror() is None or not (mirror_mod.default_mirror() / "cifar10").is_dir(),  # type: ignore[operator]
    reason="no ../shared/data/cifar10 mirror",
)


@needs_cifar
@pytest.mark.parametrize("arm", ["supcon_out", "supcon_in", "ce"])
def test_smoke_run_of_each_arm(arm, tmp_path):
    record = run_cfg(["+experiment=supcon_cifar", f"arm={arm}", "tier=smoke"], tmp_path)
    assert record.status == "completed"
    assert 0.0 <= record.metrics["test/acc"] <= 1.0
    assert record.provenance.config["task"]["loss"] == arm
    assert record.provenance.config["trainer"]["max_steps"] == 6
