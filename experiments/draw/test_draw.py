"""DRAW: the attention filterbank against a hand-computed case, read/write shapes, the bound's
terms, and the experiment end to end."""

from __future__ import annotations

import math

import pytest
import torch

from experiments.draw.model import DRAW, filterbank, read_glimpse, write_patch
from tests.conftest import needs_mnist, run_cfg

pytestmark = pytest.mark.usefixtures("one_thread")  # experiments/conftest.py


def test_filterbank_hand_case():
    """A = B = 3, N = 2, g~ = 0, delta~ = 1, sigma^2 = 1, gamma = 1: the centre is pixel 2
    (coordinates 1..3), the stride delta = (3 - 1) / (2 - 1) = 2, so the filters sit at
    mu = 2 + (i - 1.5) 2 = 1 and 3, and F[i, a] = exp(-(a - mu_i)^2 / 2) / Z."""
    params = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    fx, fy, gamma = filterbank(params, n=2, height=3, width=3)
    e = math.exp
    z = 1 + e(-0.5) + e(-2)
    row1 = [1 / z, e(-0.5) / z, e(-2) / z]  # mu = 1
    row2 = row1[::-1]  # mu = 3
    assert torch.allclose(fx[0], torch.tensor([row1, row2], dtype=torch.float64), atol=1e-7)
    assert torch.allclose(fx, fy) and gamma.item() == 1.0
    # the read of an image that is 1 at the top-left pixel only: glimpse[i, j] = Fy[i, 1] Fx[j, 1]
    img = torch.zeros(1, 3, 3, dtype=torch.float64)
    img[0, 0, 0] = 1.0
    g = read_glimpse(img, fx, fy, gamma)[0]
    expected = [[row1[0] ** 2, row1[0] * row2[0]], [row2[0] * row1[0], row2[0] ** 2]]
    assert torch.allclose(g, torch.tensor(expected, dtype=torch.float64))


def test_filterbank_centre_stride_and_intensity():
    """g~x = 2/3 puts the centre at x = (W + 1) / 2 (g~x + 1) = 5, the last pixel of W = 5;
    gamma scales the read and divides the write."""
    params = torch.tensor([[2.0 / 3.0, 0.0, math.log(0.01), 0.0, math.log(2.0)]])
    fx, fy, gamma = filterbank(params, n=1, height=5, width=5)
    # one filter on pixel 5 with a tiny variance: all its mass there
    assert fx[0, 0].argmax().item() == 4 and fx[0, 0, 4] > 0.999
    assert fy[0, 0].argmax().item() == 2  # y centred on pixel 3
    img = torch.arange(25.0).view(1, 5, 5)
    assert read_glimpse(img, fx, fy, gamma).item() == pytest.approx(
        2.0 * img[0, 2, 4].item(), rel=1e-3
    )
    patch = torch.ones(1, 1, 1)
    written = write_patch(patch, fx, fy, gamma)[0]
    assert written[2, 4].item() == pytest.approx(0.5, rel=1e-3) and written.sum() == pytest.approx(
        0.5, rel=1e-3
    )


def test_initial_read_grid_spans_the_image():
    """At initialisation (all five parameters near 0) the grid spans the image, as section 3.2
    intends ("the initial patch ... roughly covers the whole input image"): on 28 x 28 a 2x2
    grid has stride 27 and its filters sit on pixels 1 and 28, so with sigma^2 = 1 a 2x2 read
    of a digit whose 4-pixel border is blank (MNIST's) sees almost nothing; an odd grid (3x3,
    5x5) has a filter on the centre. This is why the quick tier reads 5x5 (see the yaml)."""
    params = torch.zeros(1, 5, dtype=torch.float64)
    img = torch.zeros(1, 28, 28, dtype=torch.float64)
    img[0, 4:24, 4:24] = 1.0  # ink everywhere inside the 4-pixel border
    fx2, fy2, g2 = filterbank(params, n=2, height=28, width=28)
    assert fx2[0].argmax(-1).tolist() == [0, 27]  # pixels 1 and 28
    assert read_glimpse(img, fx2, fy2, g2).max().item() < 1e-3
    fx5, fy5, g5 = filterbank(params, n=5, height=28, width=28)
    # centres 1, 7.75, 14.5, 21.25, 28: pixels 1, 8, 14 or 15, 21, 28
    assert fx5[0].argmax(-1).tolist() in ([0, 7, 13, 20, 27], [0, 7, 14, 20, 27])  # 0-based
    glimpse5 = read_glimpse(img, fx5, fy5, g5)[0]
    assert glimpse5[2, 2].item() > 0.99 and glimpse5[0, 0].item() < 1e-3


@pytest.mark.parametrize("attention", [True, False])
def test_bound_terms_and_iw_bound(attention):
    torch.manual_seed(0)
    model = DRAW(height=6, width=6, steps=3, hidden=8, latent=3, attention=attention, read_n=2,
                 write_n=3, iw_samples=50)  # fmt: skip
    x = torch.bernoulli(torch.full((4, 1, 6, 6), 0.4))
    rec, kl, log_q, log_p = model.run(x)
    assert (rec > 0).all() and (kl >= 0).all()
    with torch.no_grad():
        torch.manual_seed(1)
        elbo_nll = torch.stack([model.nll(x) for _ in range(200)]).mean(0)
        torch.manual_seed(2)
        terms = model.test_terms(x)
    # the importance-weighted bound is at most the mean negative ELBO (up to sampling noise)
    assert (terms["iw_nll"] <= elbo_nll + 0.5).all()
    assert (terms["iw_k"] == 50).all()


def test_prior_samples_are_drawn_step_by_step():
    model = DRAW(height=6, width=6, steps=4, hidden=8, latent=3, read_n=2, write_n=3)
    canvases = model.sample(2)
    assert len(canvases) == 4 and canvases[-1].shape == (2, 6, 6)
    assert not torch.allclose(canvases[0], canvases[-1])  # each glimpse writes


@needs_mnist
@pytest.mark.parametrize("arm", ["attention", "no_attention"])
def test_smoke_run_records_bounds(tmp_path, arm):
    record = run_cfg(["+experiment=draw_mnist", "tier=smoke", f"arm={arm}"], tmp_path)
    assert record.status == "completed", record.error
    m = record.metrics
    assert m["test/iw_k"] == 2.0
    assert m["test/nll"] == pytest.approx(m["test/rec"] + m["test/kl"], rel=1e-6)
    assert 0 < m["test/iw_nll"] <= m["test/nll"] + 5.0  # a K=2 bound, noisy at 64 images
    assert record.provenance.data["binarization"]["pinned"] is True
