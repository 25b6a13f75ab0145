"""The pinned MNIST evaluator (shortsci_bench.eval.mnist_evaluator): its training command is
deterministic, the committed checkpoint matches its pin and its recorded accuracy, a changed
checkpoint is refused, and its sample metrics separate real, collapsed and noise samples."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from shortsci_bench.eval import mnist_evaluator as ev
from tests.conftest import REPO, needs_mnist


def test_training_is_deterministic():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(512, 784, generator=g), torch.randint(0, 10, (512,), generator=g)
    a = ev.train_evaluator(x, y, steps=5, batch_size=64)
    b = ev.train_evaluator(x, y, steps=5, batch_size=64)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    c = ev.train_evaluator(x, y, seed=1, steps=5, batch_size=64)
    assert not torch.equal(a.fc.weight, c.fc.weight)


def test_a_changed_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evaluator.pt"
    torch.save(ev.EvaluatorCNN().state_dict(), path)
    with pytest.raises(RuntimeError, match="is pinned"):
        ev.load_evaluator(path, sha256="0" * 64)
    assert isinstance(ev.load_evaluator(path, sha256=ev.file_sha256(path)), ev.EvaluatorCNN)


def test_the_committed_checkpoint_is_pinned_small_and_carded():
    assert ev.PINNED_SHA256 is not None
    assert ev.file_sha256(ev.CHECKPOINT) == ev.PINNED_SHA256
    assert ev.CHECKPOINT.stat().st_size < 1_000_000
    card = json.loads(ev.CARD.read_text())
    assert card["sha256"] == ev.PINNED_SHA256 and card["recipe"] == ev.RECIPE


@needs_mnist
def test_recorded_accuracy_and_sample_metrics_on_real_mnist():
    from shortsci_bench.data.mnist import load_mnist, to_tensors

    _, test = load_mnist(os.environ.get("SHORTSCI_DATA", str(REPO / "data")), download=False)
    x, y = to_tensors(test)
    card = json.loads(ev.CARD.read_text())
    net = ev.load_evaluator()
    assert ev.accuracy(net, x, y) == pytest.approx(card["test_accuracy"], abs=2e-4)
    assert card["test_accuracy"] > 0.98  # a classifier good enough to label samples

    quality = ev.MNISTSampleQuality()
    real, other = x[:2000], x[2000:4000]
    same = quality(real, real)
    assert same["quality/fid"] == pytest.approx(0.0, abs=1e-6)
    assert same["quality/digits"] == 10
    assert same["quality/label_entropy"] > math.log(10) - 0.05
    assert same["quality/inception_score"] > 9.0  # real digits: confident and balanced
    held_out = quality(other, real)["quality/fid"]
    ones = x[y == 1][:2000]
    collapsed = quality(ones, real)
    assert collapsed["quality/digits"] == 1 and collapsed["quality/top_digit_share"] > 0.95
    assert collapsed["quality/inception_score"] < 1.5  # one digit only
    noise = quality(torch.rand(2000, 784, generator=torch.Generator().manual_seed(0)), real)
    # two real samples differ by sampling noise only: far less than a collapsed sample or
    # uniform noise images differ from real ones
    assert held_out < 0.2 * min(collapsed["quality/fid"], noise["quality/fid"]), held_out
    assert noise["quality/digits"] < 10 or noise["quality/label_entropy"] < math.log(10) - 0.05


def test_inception_score_on_hand_cases():
    """exp(E_x KL(p(y|x) || p(y))): 1 when every sample gets the same distribution, K when
    each is confidently one class and the classes are balanced."""
    assert ev.inception_score(torch.full((7, 10), 0.1)) == pytest.approx(1.0)
    assert ev.inception_score(torch.eye(10).repeat(3, 1)) == pytest.approx(10.0)
    collapsed = torch.zeros(5, 10)
    collapsed[:, 3] = 1.0  # confident but all one digit
    assert ev.inception_score(collapsed) == pytest.approx(1.0)
    # two classes, 0.9 confident each way: p(y) = (1/2, 1/2), KL = 0.9 ln 1.8 + 0.1 ln 0.2
    p = torch.tensor([[0.9, 0.1], [0.1, 0.9]], dtype=torch.float64)
    by_hand = math.exp(0.9 * math.log(1.8) + 0.1 * math.log(0.2))
    assert ev.inception_score(p) == pytest.approx(by_hand, rel=1e-12)
    # unbalanced: 3 of one class, 1 of another: p(y) = (3/4, 1/4)
    q = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0]])
    assert ev.inception_score(q) == pytest.approx(
        math.exp(0.75 * math.log(4 / 3) + 0.25 * math.log(4))
    )


def test_the_checkpoint_path_is_inside_the_package():
    assert Path(ev.CHECKPOINT).parent == Path(ev.__file__).parent
