"""Real NVP: each coupling and the whole multi-scale flow invert exactly, the log-determinant
equals autograd's Jacobian's on tiny inputs, the density integrates the change of variables
right, and the experiments run end to end."""

from __future__ import annotations

import math

import pytest
import torch

from experiments.real_nvp.model import (
    AffineCoupling,
    BatchNorm,
    RealNVP,
    checkerboard,
    squeeze,
    unsqueeze,
)
from tests.conftest import needs_mnist, run_cfg

pytestmark = pytest.mark.usefixtures("one_thread")  # experiments/conftest.py


def _randomize(module: torch.nn.Module, std: float = 0.1) -> None:
    """Weights off their identity start (the last layers start at zero), kept small so the
    float64 checks are not swamped by huge activations; batch norms' running statistics off
    their (0, 1) start, so the eval-mode affine maps are not near the identity."""
    torch.manual_seed(0)
    for p in module.parameters():
        torch.nn.init.normal_(p, std=std)
    for m in module.modules():
        if isinstance(m, BatchNorm):
            m.running_mean.normal_(std=0.5)
            m.running_var.uniform_(0.3, 3.0)


NORMS = [
    pytest.param({"batch_norm": False, "weight_norm": False}, id="plain"),
    pytest.param({"batch_norm": True, "weight_norm": True}, id="paper"),  # eval mode
]


def _jacobian_logdet(f, x: torch.Tensor) -> float:
    jac = torch.autograd.functional.jacobian(lambda v: f(v.view_as(x)).flatten(), x.flatten())
    sign, logabs = torch.linalg.slogdet(jac)
    assert sign != 0
    return float(logabs)


@pytest.mark.parametrize("norms", NORMS)
@pytest.mark.parametrize(("kind", "shape"), [("checkerboard", (2, 4, 4)), ("channel", (4, 2, 2))])
@pytest.mark.parametrize("parity", [0, 1])
def test_coupling_inverts_and_its_logdet_is_autograds(kind, shape, parity, norms):
    """Eval mode: every batch norm is the affine map of its running statistics."""
    layer = AffineCoupling(shape[0], kind, parity, features=6, blocks=1, **norms).double()
    _randomize(layer, std=0.3)
    layer.eval()
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


@pytest.mark.parametrize(("kind", "shape"), [("checkerboard", (2, 4, 4)), ("channel", (4, 2, 2))])
def test_training_mode_logdet_is_the_jacobian_at_the_batch_statistics(kind, shape):
    """In training every batch norm uses its batch's statistics, so the flow maps each
    example by the affine map those statistics define (section 3.7): the log-det it returns
    must be that map's. With momentum 1 the running statistics become the batch's, so the
    eval-mode map reproduces the training outputs, and its per-example Jacobian is autograd's."""
    layer = AffineCoupling(shape[0], kind, 0, features=6, blocks=1, batch_norm=True,
                           weight_norm=True, bn_momentum=1.0).double()  # fmt: skip
    _randomize(layer, std=0.3)
    layer.train()
    x = torch.randn(5, *shape, dtype=torch.float64) * 2 + 1
    y, logdet = layer(x)
    out = layer.norm.running_var  # the output norm normalises: its batch variance is not 1
    assert not torch.allclose(out, torch.ones_like(out), atol=1e-3)
    layer.eval()
    y_eval, logdet_eval = layer(x)
    assert torch.allclose(y_eval, y, atol=1e-12) and torch.allclose(logdet_eval, logdet, atol=1e-10)
    assert torch.allclose(layer.inverse(y), x, atol=1e-10)
    for i in range(len(x)):
        expected = _jacobian_logdet(lambda v: layer(v)[0], x[i : i + 1])
        assert float(logdet[i]) == pytest.approx(expected, abs=1e-8)


def test_batch_norm_statistics_cover_only_the_transformed_sites():
    """The checkerboard output norm standardises the transformed sites of each channel over
    the batch (mean 0, variance v / (v + eps) for a batch variance v of about 9) and leaves
    the conditioning sites alone."""
    layer = AffineCoupling(1, "checkerboard", 0, features=4, blocks=1, batch_norm=True,
                           weight_norm=True).double()  # fmt: skip
    _randomize(layer, std=0.3)
    x = torch.randn(8, 1, 4, 4, dtype=torch.float64) * 3 + 2
    y, _ = layer(x)
    moved = ~checkerboard(4, 4, 0).bool().expand_as(x)
    assert float(y[moved].mean()) == pytest.approx(0.0, abs=1e-12)
    assert float(y[moved].var(unbiased=False)) == pytest.approx(1.0, abs=1e-4)  # v / (v + eps)
    assert torch.equal(y[~moved], x[~moved])


def test_scale_penalty_sums_the_weight_norm_magnitudes_and_tanh_scales():
    flow = RealNVP((1, 4, 4), scales=1, features=3, blocks=1)
    layer = flow.levels[0][0]
    # per coupling: the tanh scale, the magnitudes of the input conv, the block's second
    # conv (the first precedes a batch norm: no magnitude) and the output conv
    assert len(layer.scale_parameters()) == 4
    expected = sum(float((p**2).sum()) for c in flow.levels[0] for p in c.scale_parameters())
    assert float(flow.scale_penalty()) == pytest.approx(expected)
    assert all(float(c.net.out.g.abs().sum()) == 0 for c in flow.levels[0])  # zero start


def test_sampling_inverts_the_eval_map_and_leaves_the_mode():
    flow = RealNVP((1, 4, 4), scales=2, features=4, blocks=1).double()
    _randomize(flow)
    flow.train()
    torch.manual_seed(3)
    x = flow.sample(2)
    assert flow.training and x.shape == (2, 1, 4, 4) and torch.isfinite(x).all()
    torch.manual_seed(3)
    flow.eval()
    z = torch.randn(2, 16)  # sample's draw: float32
    assert torch.allclose(x, flow.from_logit(flow.inverse(z)).clamp(0, 1) * 255.0)


def test_squeeze_moves_each_2x2_block_into_channels():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    s = squeeze(x)
    assert s.shape == (1, 4, 2, 2)
    assert s[0, :, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]  # the top-left block
    assert torch.equal(unsqueeze(s), x)


@pytest.mark.parametrize("norms", NORMS)
@pytest.mark.parametrize(("shape", "scales"), [((1, 4, 4), 2), ((3, 8, 8), 3), ((1, 4, 4), 1)])
def test_multiscale_flow_inverts_and_logdet_matches_the_jacobian(shape, scales, norms):
    flow = RealNVP(shape, scales=scales, features=6, blocks=1, **norms).double()
    _randomize(flow)
    flow.eval()
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
    flow.eval()
    y = torch.rand(1, 1, 4, 4, dtype=torch.float64)

    def y_to_z(v):
        return flow(flow.to_logit(v)[0])[0]

    z = y_to_z(y)
    expected = -0.5 * float((z**2).sum()) - 8 * math.log(2 * math.pi) + _jacobian_logdet(y_to_z, y)
    assert float(flow.log_density(y)) == pytest.approx(expected, abs=1e-8)


def test_identity_start_gives_the_logit_gaussian_density():
    """At initialisation every coupling is the identity (zero last layers), so the NLL is that
    of a standard normal in logit space: a check of the units against a hand computation.
    (Without the output batch norms, which are not the identity even at the start.)"""
    flow = RealNVP((1, 2, 2), scales=1, features=4, blocks=1, batch_norm=False).double()
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
    flow = instantiate(cfg.model).eval()  # as LikelihoodTask.score measures it
    x = torch.randint(0, 256, (2, 3, 32, 32)).float()
    terms = flow.test_terms(x)
    assert torch.isfinite(flow.nll(x)).all() and (terms["recon_err_max"] < 1e-4).all()
