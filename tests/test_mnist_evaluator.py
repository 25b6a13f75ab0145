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
    held_out = quality(other, real)["quality/fid"]
    ones = x[y == 1][:2000]
    collapsed = quality(ones, real)
    assert collapsed["quality/digits"] == 1 and collapsed["quality/top_digit_share"] > 0.95
    noise = quality(torch.rand(2000, 784, generator=torch.Generator().manual_seed(0)), real)
    # two real samples differ by sampling noise only: far less than a collapsed sample or
    # uniform noise images differ from real ones
    assert held_out < 0.2 * min(collapsed["quality/fid"], noise["quality/fid"]), held_out
    assert noise["quality/digits"] < 10 or noise["quality/label_entropy"] < math.log(10) - 0.05


def test_the_checkpoint_path_is_inside_the_package():
    assert Path(ev.CHECKPOINT).parent == Path(ev.__file__).parent
