"""AIR on multi-MNIST: the spatial transformer against hand cases, count accuracy, the scene
generator (counts, placement, pinned checksums), the ELBO's parts, and the experiment end to
end (smoke run, exact resume after SIGKILL)."""

from __future__ import annotations

import os

import pytest
import torch

from experiments.attend_infer_repeat.data import (
    MultiMNISTDataModule,
    ink_boxes,
    make_scenes,
    scenes_sha256,
)
from experiments.attend_infer_repeat.model import (
    AIR,
    count_accuracy,
    gaussian_kl,
    read_window,
    write_window,
)
from experiments.attend_infer_repeat.task import AIRTask
from tests.conftest import REPO, assert_resumes_exactly, needs_mnist, run_cfg

SMOKE = ["+experiment=air_multimnist", "tier=smoke", "arm=air"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_write_then_read_puts_the_window_back_where_it_was_taken():
    """Canvas 8x8, window 4x4, s = 2, t = (0.25, 0.25). Pixel centres (align_corners=False):
    canvas i at (2i + 1) / 8 - 1, window j at (2j + 1) / 4 - 1. Writing maps canvas v to window
    u = 2 (v - 0.25), so canvas pixels 3..6 receive window pixels 0..3 exactly and the rest
    of the canvas stays 0; reading maps u back to v = u / 2 + 0.25: the same 4x4 block."""
    patch = torch.arange(1.0, 17.0, dtype=torch.float64).view(1, 1, 4, 4)
    z_where = torch.tensor([[2.0, 0.25, 0.25]], dtype=torch.float64)
    canvas = write_window(patch, z_where, 8)
    expected = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    expected[..., 3:7, 3:7] = patch
    assert torch.allclose(canvas, expected, atol=1e-12)
    assert torch.allclose(read_window(canvas, z_where, 4), patch, atol=1e-12)
    # shift x only: tx = -0.5 moves the block two canvas pixels left (columns 1..4)
    left = write_window(patch, torch.tensor([[2.0, -0.25, 0.25]], dtype=torch.float64), 8)
    assert torch.allclose(left[..., 3:7, 1:5], patch, atol=1e-12) and left.sum() == patch.sum()


def test_window_round_trip_on_a_random_placement():
    """For any scale and shift that keep the window inside the canvas, reading back what was
    written recovers the object up to bilinear blur (checked on a smooth object)."""
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 20), torch.linspace(-1, 1, 20), indexing="ij")
    obj = torch.exp(-(xx**2 + yy**2) / 0.3).view(1, 1, 20, 20)
    z_where = torch.tensor([[2.5, -0.3, 0.4]])
    back = read_window(write_window(obj, z_where, 50), z_where, 20)
    assert (back - obj).abs().max() < 0.02


def test_count_accuracy_hand_case():
    pred = torch.tensor([0, 1, 2, 2, 3])
    true = torch.tensor([0, 1, 1, 2, 2])
    assert count_accuracy(pred, true) == pytest.approx(3 / 5)
    with pytest.raises(ValueError):
        count_accuracy(pred[:4], true)


class FixedCounts(torch.nn.Module):
    """Stands in for AIR: 'finds' the number stored in the scene's first pixel."""

    def infer_counts(self, x):
        return x[:, 0, 0, 0].long()

    def nll(self, x):
        return torch.full((len(x),), 2.0)


def test_task_scores_counts_overall_and_by_true_count():
    task = AIRTask(FixedCounts(), optimizer=torch.optim.SGD)
    true = torch.tensor([0, 1, 2, 0, 1, 2])
    found = torch.tensor([0, 1, 1, 1, 1, 2])  # wrong on one 2 and one 0
    x = torch.zeros(6, 1, 3, 3)
    x[:, 0, 0, 0] = found.float()
    m = task.score([(x[:4], true[:4]), (x[4:], true[4:])], "test", by_count=True)
    assert m["test/count_acc"] == pytest.approx(4 / 6)
    assert m["test/count_acc_n0"] == pytest.approx(0.5)
    assert m["test/count_acc_n1"] == 1.0 and m["test/count_acc_n2"] == pytest.approx(0.5)
    assert m["test/count_mean"] == pytest.approx(1.0) and m["test/elbo"] == -2.0


def test_ink_boxes_hand_case():
    imgs = torch.zeros(2, 6, 6, dtype=torch.uint8)
    imgs[0, 1:3, 2:5] = 9
    boxes = ink_boxes(imgs)
    assert boxes[0].tolist() == [1, 3, 2, 5]
    assert boxes[1].tolist() == [0, 6, 0, 6]  # blank: the whole image


def _digits(n=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    imgs = torch.zeros(n, 28, 28, dtype=torch.uint8)
    for i in range(n):  # a solid block of random size and place: its ink box is known
        h, w = (int(v) for v in torch.randint(4, 21, (2,), generator=g))
        r, c = (int(v) for v in torch.randint(0, 28 - 20, (2,), generator=g))
        imgs[i, r : r + h, c : c + w] = 100 + i
    return imgs


def test_scenes_hold_the_requested_digits_without_overlap():
    imgs = _digits()
    boxes = ink_boxes(imgs)
    counts = torch.arange(300) % 3
    canv, out = make_scenes(imgs, boxes, 300, 50, 2, torch.Generator().manual_seed(1), counts)
    assert torch.equal(out, counts) and canv.shape == (300, 50, 50)
    areas = ((boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])).tolist()
    intensities = {100 + i: areas[i] for i in range(len(imgs))}
    for k in range(300):
        values, freq = canv[k].unique(return_counts=True)
        placed = {int(v): int(f) for v, f in zip(values, freq, strict=True) if v > 0}
        # each digit is a block of its own intensity: no overlap = every block whole
        if len(placed) == counts[k]:
            assert all(intensities[v] == f for v, f in placed.items())
        else:  # the same digit drawn twice: one intensity, twice its area
            ((v, f),) = placed.items()
            assert counts[k] == 2 and f == 2 * intensities[v]
        if counts[k] == 0:
            assert canv[k].sum() == 0


def test_scene_generation_is_a_function_of_the_generator():
    imgs = _digits()
    boxes = ink_boxes(imgs)
    a = make_scenes(imgs, boxes, 64, 50, 2, torch.Generator().manual_seed(5))
    b = make_scenes(imgs, boxes, 64, 50, 2, torch.Generator().manual_seed(5))
    c = make_scenes(imgs, boxes, 64, 50, 2, torch.Generator().manual_seed(6))
    assert scenes_sha256(*a) == scenes_sha256(*b) != scenes_sha256(*c)
    assert set(a[1].tolist()) == {0, 1, 2}


@needs_mnist
def test_real_multi_mnist_is_pinned_and_balanced():
    dm = MultiMNISTDataModule(root=os.environ.get("SHORTSCI_DATA", str(REPO / "data")))
    dm.setup()
    assert dm.pinned == {"val": True, "test": True}, dm.sha256
    for split, n in (("val", 1000), ("test", 3000)):
        x, counts = dm.splits[split]
        assert x.shape == (n, 1, 50, 50) and 0 <= x.min() and x.max() <= 1
        assert counts.tolist() == [i % 3 for i in range(n)]  # 0, 1, 2 in turn
        assert (x[counts == 0].sum((1, 2, 3)) == 0).all()
        assert (x[counts > 0].sum((1, 2, 3)) > 0).all()


def test_gaussian_kl_matches_torch():
    mu, std = torch.randn(5, 3), torch.rand(5, 3) + 0.1
    mu0, std0 = torch.tensor([1.8, 0.0, 0.0]), torch.tensor([0.2, 1.0, 1.0])
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, std), torch.distributions.Normal(mu0, std0)
    ).sum(-1)
    assert torch.allclose(gaussian_kl(mu, std, mu0, std0), ref, atol=1e-5)


def _tiny_air(**kw):
    return AIR(canvas=12, window=6, max_steps=3, lstm_hidden=8, encoder_hidden=8,
               decoder_hidden=8, z_what=2, baseline_hidden=8, **kw)  # fmt: skip


def test_z_pres_chain_stops_and_elbo_adds_up():
    torch.manual_seed(0)
    model = _tiny_air()
    x = torch.rand(200, 1, 12, 12)
    out = model(x)
    z = out["z_pres"]
    assert (z[:, 1:] <= z[:, :-1]).all()  # once absent, absent for good
    assert torch.equal(out["live"][:, 1:], z[:, :-1]) and (out["live"][:, 0] == 1).all()
    assert ((out["log_q_pres"] == 0) | (out["live"] == 1)).all()
    assert 0 < z.sum(1).float().mean() < 3  # q starts at 0.5: both outcomes happen
    # a scene with no object: the canvas is blank and the loglik is the pixel noise's
    none = z.sum(1) == 0
    assert none.any() and (out["canvas"][none] == 0).all()


def test_reinforce_trains_z_pres_through_the_learning_signal():
    """The score-function term is the only way the likelihood reaches q(z_pres): without
    it (reinforce=False) the presence head's gradient ignores the image's reconstruction."""
    x = torch.rand(32, 1, 12, 12)
    grads = {}
    for flag in (True, False):
        torch.manual_seed(0)
        model = _tiny_air(reinforce=flag)
        torch.manual_seed(1)
        loss, _ = model.loss(x)
        loss.mean().backward()
        grads[flag] = model.pres_head.weight.grad.clone()
        if flag:  # the baseline learns by regression on the signal
            assert model.baseline[0].weight.grad.abs().sum() > 0
        else:
            assert model.baseline[0].weight.grad is None
    assert not torch.allclose(grads[True], grads[False])


@needs_mnist
def test_smoke_run_records_counts_and_elbo(tmp_path):
    rec = run_cfg(SMOKE, tmp_path)
    assert rec.status == "completed", rec.error
    m = rec.metrics
    assert [row["step"] for row in rec.history] == [5.0, 10.0]
    assert 0.0 <= m["test/count_acc"] <= 1.0 and 0.0 <= m["test/count_mean"] <= 3.0
    # 60 test scenes, 20 of each count: the overall accuracy is the mean of the three
    per = [m[f"test/count_acc_n{k}"] for k in range(3)]
    assert m["test/count_acc"] == pytest.approx(sum(per) / 3)
    assert "test/elbo" in m and "val/count_acc_mean" in m
    assert rec.provenance.data["dataset"] == "multi_mnist"


@needs_mnist
@pytest.mark.slow  # two subprocess runs, about a minute: CI runs it (make test-slow)
def test_a_killed_run_resumes_bit_identically(tmp_path):
    """SIGKILL at step 7 (last checkpoint at step 5), then the same command: the record
    equals an uninterrupted run's, history and metrics (time aside)."""
    assert_resumes_exactly(SMOKE, tmp_path, kill_at=7)
