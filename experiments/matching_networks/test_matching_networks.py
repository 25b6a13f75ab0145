"""Matching Networks: the embedding, Full Context Embeddings, the attention rule, and a run."""

from __future__ import annotations

import math

import pytest
import torch

from experiments.matching_networks.model import (
    ConvEmbedding,
    MatchingNetwork,
    QueryFCE,
    SupportFCE,
)
from shortsci_bench.data import mirror as mirror_mod
from shortsci_bench.data import omniglot as O
from tests.conftest import killed_then_resumed, run_cfg
from tests.omniglot_fake import fake_smoke_overrides, register_tiny_split

torch.set_num_threads(1)


def test_conv_embedding_maps_28x28_to_64():
    net = ConvEmbedding()
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 64)
    assert len([m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]) == 4


def test_embedding_is_signed_and_a_silenced_unit_still_learns():
    # Issue 13: with a ReLU as the embedding's last op every embedding is >= 0, so every cosine
    # of eq. 2 is in [0, 1]; 20-way training then pushes the other classes' cosines towards 0
    # by silencing units, a silenced unit gets no gradient and stays dead, the embedding
    # collapses and test accuracy falls as training goes on.
    sx, qx = torch.rand(2, 20, 1, 28, 28), torch.rand(2, 40, 1, 28, 28)
    sy, qy = torch.arange(20).expand(2, 20), torch.arange(20).repeat_interleave(2).expand(2, 40)
    for final_relu in (False, True):
        torch.manual_seed(0)
        net = MatchingNetwork(final_relu=final_relu)
        bn = net.encoder.net[-1][1]  # the last block's batch norm
        with torch.no_grad():
            bn.bias[:8] = -10.0  # push 8 units far below zero for every drawing
        z = net.embed(torch.cat([sx, qx], 1))
        loss = torch.nn.functional.nll_loss(net(sx, sy, qx, 20).reshape(-1, 20), qy.reshape(-1))
        loss.backward()
        if final_relu:  # the literal reading: those units are exactly 0 and get no gradient
            assert (z[..., :8] == 0).all() and (bn.bias.grad[:8] == 0).all()
        else:  # ours: signed, and the matching loss still reaches them
            assert (z[..., :8] < 0).all() and (bn.bias.grad[:8].abs() > 0).all()


def test_fce_shapes_and_context():
    torch.manual_seed(0)
    g, f = SupportFCE(64), QueryFCE(64, steps=3)
    support, query = torch.randn(2, 10, 64), torch.randn(2, 7, 64)
    gs = g(support)
    assert gs.shape == (2, 10, 64) and f(query, gs).shape == (2, 7, 64)
    # g(x_i, S) depends on the rest of S: change x_9 and g(x_0, S) moves
    other = support.clone()
    other[:, 9] += 1.0
    assert not torch.allclose(g(other)[:, 0], gs[:, 0])
    # f(x_hat, S) depends on S too, while the plain embedding would not
    assert not torch.allclose(f(query, g(other)), f(query, gs))


def test_fce_network_output_is_a_distribution_over_the_way():
    torch.manual_seed(0)
    net = MatchingNetwork(fce=True, fce_steps=2)
    sx, qx = torch.rand(2, 20 * 1, 1, 28, 28), torch.rand(2, 4, 1, 28, 28)
    sy = torch.arange(20).expand(2, 20)
    lp = net(sx, sy, qx, way=20)
    assert lp.shape == (2, 4, 20)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(2, 4), atol=1e-5)


def test_attention_sums_over_each_class_members():
    # embeddings by hand: query equals support item 0; classes {0: items 0, 1}, {1: item 2}
    net = MatchingNetwork(embedding="pixels")
    support = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    labels = torch.tensor([[0, 0, 1]])
    query = torch.tensor([[[1.0, 0.0]]])
    cos = torch.tensor([1.0, 0.0, 1 / math.sqrt(2)])
    att = torch.softmax(cos, 0)
    lp = net.log_probs(support, labels, query, way=2)
    assert torch.allclose(lp.exp()[0, 0], torch.stack([att[0] + att[1], att[2]]), atol=1e-6)
    assert net.nearest_neighbour(support, labels, query).tolist() == [[0]]
    assert net.nearest_neighbour(support, labels, torch.tensor([[[0.9, 1.0]]])).tolist() == [[1]]


def test_matching_loss_falls_on_a_fixed_episode():
    torch.manual_seed(0)
    net = MatchingNetwork()
    sx, qx = torch.rand(1, 5, 1, 28, 28), torch.rand(1, 5, 1, 28, 28)
    qx = sx + 0.1 * qx  # queries are noisy copies of the support
    sy = torch.arange(5)[None]
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.nll_loss(net(sx, sy, qx, 5)[0], sy[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1


def _overrides(arm: str, mirror, root) -> list[str]:
    return [
        *fake_smoke_overrides("matchingnet_omniglot", arm, mirror, root),
        "dataset.eval_settings=[5w1s,5w5s]",
        "trainer.max_steps=4",
        "eval_every=2",
        "dataset.batch_size=16",
    ]


@pytest.mark.parametrize("arm", ["matching", "matching_fce", "pixels_1nn", "baseline_nn"])
def test_each_arm_runs_end_to_end(arm, fake_omniglot, tmp_path, monkeypatch):
    register_tiny_split(monkeypatch)
    rec = run_cfg(_overrides(arm, *fake_omniglot), tmp_path / "runs")
    assert rec.status == "completed", rec.error
    for s in ("5w1s", "5w5s"):
        assert 0.0 <= rec.metrics[f"test/acc_{s}"] <= 1.0
        assert rec.metrics[f"test/acc_{s}_ci95"] >= 0
    assert rec.provenance.data["split"] == "tiny"
    assert set(rec.provenance.data["pinned_episodes_sha256"]) == {"5w1s", "5w5s"}
    if arm == "pixels_1nn":
        assert rec.history and "time/step_s" not in rec.metrics  # evaluated, never trained
        # the fake characters are ink squares: raw-pixel 1-NN is far above chance (0.2)
        assert rec.metrics["test/acc_5w1s"] > 0.5
    else:
        assert rec.metrics["time/step_s"] > 0


def test_same_config_and_seed_same_metrics(fake_omniglot, tmp_path, monkeypatch):
    register_tiny_split(monkeypatch)
    a = run_cfg(_overrides("matching", *fake_omniglot), tmp_path / "a")
    b = run_cfg(_overrides("matching", *fake_omniglot), tmp_path / "b")
    keys = [k for k in a.metrics if k.startswith("test/")]
    assert keys and all(a.metrics[k] == b.metrics[k] for k in keys)


# --- the real data (skipped without the mirror; slow: decodes Omniglot once, about 1 min) ---------

REAL = mirror_mod.default_mirror()
needs_real_mirror = pytest.mark.skipif(
    REAL is None or not (REAL / "omniglot").is_dir(), reason="no Omniglot mirror"
)


@pytest.mark.slow
@needs_real_mirror
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    smoke = ["+experiment=matchingnet_omniglot", "arm=matching", "tier=smoke", "logger=none"]
    reference = run_cfg(smoke, tmp_path / "ref")
    rec = killed_then_resumed(smoke, tmp_path / "killed", kill_at=15)
    test_metrics = {k: v for k, v in rec["metrics"].items() if k.startswith("test/")}
    assert test_metrics == {k: v for k, v in reference.metrics.items() if k.startswith("test/")}
    assert rec["provenance"]["data"]["split_sha256"] == O.SPLIT_SHA256["vinyals_1200"]
