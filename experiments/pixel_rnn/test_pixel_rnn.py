"""PixelCNN: the masks make the model autoregressive (checked by gradients), the NLL is the
exact log-likelihood of a normalised distribution, and the experiments run end to end."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from experiments.pixel_rnn.model import PixelCNN, causal_mask
from tests.conftest import needs_mnist, run_cfg

pytestmark = pytest.mark.usefixtures("one_thread")  # experiments/conftest.py


def _dependence(model: PixelCNN, shape: tuple[int, int, int], inputs: int = 4) -> torch.Tensor:
    """dep[o, i]: whether output value o (raster order, channels innermost) has a nonzero
    gradient with respect to input value i, on any of `inputs` random inputs (one input
    alone may hide a dependence behind a ReLU that is off there)."""
    torch.manual_seed(0)
    for p in model.parameters():  # break symmetries: every weight matters
        torch.nn.init.normal_(p, std=0.5)
    c, h, w = shape
    x = torch.randn(inputs, c, h, w).requires_grad_(True)
    logits = model.logits(x)
    if model.levels != 2:
        logits = logits.sum(1)  # (N, C, H, W): every level's logit at once

    def flat(t: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, H*W*C): channel innermost
        return t.permute(0, 2, 3, 1).reshape(len(t), -1)

    outs = flat(logits).sum(0)  # examples are independent: one backward serves all of them
    dep = torch.zeros(len(outs), c * h * w, dtype=torch.bool)
    for o in range(len(outs)):
        (g,) = torch.autograd.grad(outs[o], x, retain_graph=True)
        dep[o] = (flat(g) != 0).any(0)
    return dep


@pytest.mark.parametrize("layers", [1, 4])
def test_binary_output_never_depends_on_current_or_later_pixels(layers):
    dep = _dependence(PixelCNN(layers=layers, h=4, out_features=6), (1, 8, 8))
    n = dep.shape[0]
    later = torch.triu(torch.ones(n, n, dtype=torch.bool))  # i >= o
    assert not dep[later].any(), "an output sees its own or a later pixel"
    # and it does see earlier pixels: the one to its left (same row) and the one above it
    assert all(dep[o, o - 1] for o in range(1, n) if o % 8)
    assert all(dep[o, o - 8] for o in range(8, n))


def test_colour_masks_order_r_g_b_within_a_pixel():
    dep = _dependence(PixelCNN(layers=3, h=12, out_features=12, colors=3, levels=4), (3, 5, 5), 16)
    n = dep.shape[0]
    assert not dep[torch.triu(torch.ones(n, n, dtype=torch.bool))].any()
    # G sees R of its pixel, B sees R and G; R sees neither. (Pixels of the first row have so
    # little context that ReLUs off on every random input can hide a dependence.)
    for pixel in range(5, 25):
        r, g, b = 3 * pixel, 3 * pixel + 1, 3 * pixel + 2
        assert dep[g, r] and dep[b, r] and dep[b, g] and not dep[r, r]


def test_mask_a_hides_the_centre_and_mask_b_shows_it():
    a, b = causal_mask(3, 1, 1, "A", 1)[0, 0], causal_mask(3, 1, 1, "B", 1)[0, 0]
    assert a.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert b.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]


def test_nll_is_a_normalised_distribution_over_all_binary_images():
    """On 2x2 binary images the 16 probabilities exp(-nll) sum to one."""
    model = PixelCNN(layers=2, h=3, out_features=4)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4))).view(16, 1, 2, 2)
    total = torch.exp(-model.nll(images).double()).sum().item()
    assert total == pytest.approx(1.0, abs=1e-5)


def test_categorical_nll_sums_to_one_over_a_tiny_colour_space():
    """1x1 images with 3 colour channels of 3 levels: 27 outcomes, probabilities sum to one."""
    model = PixelCNN(layers=2, h=3, out_features=6, colors=3, levels=3)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    images = torch.tensor(list(itertools.product([0.0, 1.0, 2.0], repeat=3))).view(27, 3, 1, 1)
    assert torch.exp(-model.nll(images).double()).sum().item() == pytest.approx(1.0, abs=1e-5)


def test_untrained_nll_is_near_784_log_2():
    """Near-zero logits give each pixel probability 1/2: NLL ~ 784 ln 2 nats."""
    model = PixelCNN(layers=2, h=4)
    torch.nn.init.zeros_(model.out.weight)
    torch.nn.init.zeros_(model.out.bias)
    x = torch.bernoulli(torch.full((3, 1, 28, 28), 0.3))
    assert torch.allclose(model.nll(x), torch.full((3,), 784 * math.log(2)), rtol=1e-6)


@needs_mnist
@pytest.mark.parametrize("arm", ["deep", "shallow"])
def test_smoke_run_records_nll_and_binarization(tmp_path, arm):
    record = run_cfg(["+experiment=pixelcnn_mnist", "tier=smoke", f"arm={arm}"], tmp_path)
    assert record.status == "completed", record.error
    m = record.metrics
    # 20 steps of a tiny model: plumbing only; a finite positive NLL in the right units
    assert 0 < m["test/nll"] < 2 * 784 * math.log(2)
    assert m["test/bpd"] == pytest.approx(m["test/nll"] / (784 * math.log(2)))
    binarization = record.provenance.data["binarization"]
    assert binarization["pinned"] is True and binarization["seed"] > 0


def test_cifar_smoke_composes_and_runs_without_data(tmp_path):
    """The CIFAR-10 experiment's model on random 8-bit images (the data need the mirror)."""
    from hydra.utils import instantiate

    from tests.conftest import compose_cfg

    cfg = compose_cfg(["+experiment=pixelcnn_cifar10", "tier=smoke"], tmp_path)
    model = instantiate(cfg.model)
    x = torch.randint(0, 256, (2, 3, 8, 8)).float()
    nll = model.nll(x)
    assert nll.shape == (2,) and torch.isfinite(nll).all()
