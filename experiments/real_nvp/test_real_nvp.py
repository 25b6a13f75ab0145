"""Real NVP: each coupling and the whole multi-scale flow invert exactly, the log-determinant
equals autograd's Jacobian's on tiny inputs, the density integrates the change of variables
right, and the experiments run end to end."""

from __future__ import annotations

import math

import pytest
import torch

from experiments.real_nvp.model import AffineCoupling, RealNVP, checkerboard, squeeze, unsqueeze
from tests.conftest import needs_mnist, run_cfg

pytestmark = pytest.mark.usefixtures("one_thread")  # experiments/conftest.py


def _randomize(module: torch.nn.Module, std: float = 0.1) -> None:
    """Weights off their identity start (the last layers start at zero), kept small so the
    float64 checks are not swamped by huge activations."""
    torch.manual_seed(0)
    for p in module.parameters():
        torch.nn.init.normal_(p, std=std)


def _jacobian_logdet(f, x: torch.Tensor) -> float:
    jac = torch.autograd.functional.jacobian(lambda v: f(v.view_as(x)).flatten(), x.flatten())
    sign, logabs = torch.linalg.slogdet(jac)
    assert sign != 0
    return float(logabs)


@pytest.mark.parametrize(("kind", "shape"), [("checkerboard", (2, 4, 4)), ("channel", (4, 2, 2))])
@pytest.mark.parametrize("parity", [0, 1])
def test_coupling_inverts_and_its_logdet_is_autograds(kind, shape, parity):
    layer = AffineCoupling(shape[0], kind, parity, features=6, blocks=1).double()
    _randomize(layer, std=0.3)
    x = torch.randn(1, *shape, dtype=torch.float64)
    y, logdet = layer(x)
    assert torch.allclose(layer.inverse(y), x, atol=1e-12)
    assert float(logdet) == pytest.approx(_jacobian_logdet(lambda v: layer(v)[0], x), abs=1e-9)
    # the conditioning half passes through unchanged
    if kind == "checkerboard":
        b = checkerboard(shape[1], shape[2], parity).bool().expand_as(x)
        assert torch.equal(y[b], x[b])
    else:
        keep = slice(0, shape[0] // 2) if parity == 0 else slice(shape[0] // 2, None)
        assert torch.equal(y[:, keep], x[:, keep])


def test_squeeze_moves_each_2x2_block_into_channels():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    s = squeeze(x)
    assert s.shape == (1, 4, 2, 2)
    assert s[0, :, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]  # the top-left block
    assert torch.equal(unsqueeze(s), x)


@pytest.mark.parametrize(("shape", "scales"), [((1, 4, 4), 2), ((3, 8, 8), 3), ((1, 4, 4), 1)])
def test_multiscale_flow_inverts_and_logdet_matches_the_jacobian(shape, scales):
    flow = RealNVP(shape, scales=scales, features=6, blocks=1).double()
    _randomize(flow)
    x = torch.randn(2, *shape, dtype=torch.float64)
    z, logdet = flow(x)
    assert z.shape == (2, math.prod(shape))
    assert torch.allclose(flow.inverse(z), x, atol=1e-10)
    for i in range(2):  # each example alone: the Jacobian is per image
        expected = _jacobian_logdet(lambda v: flow(v)[0], x[i : i + 1])
        assert float(logdet[i]) == pytest.approx(expected, abs=1e-8)


def test_log_density_includes_the_logit_jacobian():
    """log p(y) = log N(f(logit(y))) + log|det df| + log|det dlogit|: checked against the
    full Jacobian of y -> z on one 1x4x4 image."""
    flow = RealNVP((1, 4, 4), scales=2, features=6, blocks=1).double()
    _randomize(flow)
    y = torch.rand(1, 1, 4, 4, dtype=torch.float64)

    def y_to_z(v):
        return flow(flow.to_logit(v)[0])[0]

    z = y_to_z(y)
    expected = -0.5 * float((z**2).sum()) - 8 * math.log(2 * math.pi) + _jacobian_logdet(y_to_z, y)
    assert float(flow.log_density(y)) == pytest.approx(expected, abs=1e-8)


def test_identity_start_gives_the_logit_gaussian_density():
    """At initialisation every coupling is the identity (zero last layers), so the NLL is that
    of a standard normal in logit space: a check of the units against a hand computation."""
    flow = RealNVP((1, 2, 2), scales=1, features=4, blocks=1).double()
    y = torch.full((1, 1, 2, 2), 0.5, dtype=torch.float64)  # logit(0.5) = 0
    # log N(0) per dim = -0.5 log 2pi; logit Jacobian per dim: log(1-2a) - log(0.25)
    per_dim = -0.5 * math.log(2 * math.pi) + math.log(0.9) - math.log(0.25)
    assert float(flow.log_density(y)) == pytest.approx(4 * per_dim, abs=1e-12)


@needs_mnist
def test_smoke_run_records_bits_per_dim_and_exact_inverse(tmp_path):
    record = run_cfg(["+experiment=realnvp_mnist", "tier=smoke"], tmp_path)
    assert record.status == "completed", record.error
    m = record.metrics
    assert 0 < m["test/bpd"] < 16  # 8 bits/dim is a uniform model; untrained flows are worse
    assert m["test/bpd"] == pytest.approx(m["test/nll"] / (784 * math.log(2)))
    assert m["test/recon_err_max"] < 1e-4  # float32 round trip, far below one level (3.9e-3)


def test_cifar_model_composes_and_inverts_without_data(tmp_path):
    from hydra.utils import instantiate

    from tests.conftest import compose_cfg

    cfg = compose_cfg(["+experiment=realnvp_cifar10", "tier=smoke"], tmp_path)
    flow = instantiate(cfg.model)
    x = torch.randint(0, 256, (2, 3, 32, 32)).float()
    terms = flow.test_terms(x)
    assert torch.isfinite(flow.nll(x)).all() and (terms["recon_err_max"] < 1e-4).all()
