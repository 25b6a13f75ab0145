"""The neural statistician: the statistic network's permutation invariance, the KL rule on
hand-built posteriors, the lower bound, and end-to-end runs on a fake Omniglot mirror."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from experiments.neural_statistician.model import NeuralStatistician, gaussian_kl, kl_classify
from tests.conftest import compose_cfg, run_cfg
from tests.omniglot_fake import fake_smoke_overrides, register_tiny_split

torch.set_num_threads(1)
SMALL = dict(channels=(8, 16, 16), depth=1, hidden=32, layers=1, c_dim=8, z_dim=4)


@pytest.mark.parametrize("train_mode", [False, True])
def test_context_posterior_is_permutation_invariant(train_mode):
    torch.manual_seed(0)
    net = NeuralStatistician(**SMALL).train(train_mode)
    x = torch.rand(3, 5, 1, 28, 28)
    mean, logvar = net.context_of(x)
    perm = torch.tensor([3, 0, 4, 2, 1])
    mean_p, logvar_p = net.context_of(x[:, perm])
    torch.testing.assert_close(mean_p, mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logvar_p, logvar, rtol=1e-5, atol=1e-5)
    # not invariant by being constant: replacing one drawing moves the posterior
    other = x.clone()
    other[:, 0] = torch.rand(3, 1, 28, 28)
    assert not torch.allclose(net.context_of(other)[0], mean, atol=1e-4)


def test_sets_are_pooled_separately():
    # A dataset's posterior must not depend on the other datasets of the batch (eval mode).
    torch.manual_seed(0)
    net = NeuralStatistician(**SMALL).eval()
    x = torch.rand(4, 5, 1, 28, 28)
    together = net.context_of(x)[0]
    alone = torch.cat([net.context_of(x[i : i + 1])[0] for i in range(4)])
    torch.testing.assert_close(alone, together, rtol=1e-5, atol=1e-5)


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mq, mp = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    lq, lp = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    ref = kl_divergence(Normal(mq, (0.5 * lq).exp()), Normal(mp, (0.5 * lp).exp())).sum(-1)
    torch.testing.assert_close(gaussian_kl(mq, lq, mp, lp), ref, rtol=1e-5, atol=1e-6)


def test_kl_classification_hand_built():
    # One-dimensional contexts. Classes: A = N(0, 0.25), B = N(0, 3), C = N(3, 1).
    class_mean = torch.tensor([[[0.0], [0.0], [3.0]]])
    class_logvar = torch.log(torch.tensor([[[0.25], [3.0], [1.0]]]))
    # Queries: N(0, 1), N(2.8, 1), N(0, 0.2).
    q_mean = torch.tensor([[[0.0], [2.8], [0.0]]])
    q_logvar = torch.log(torch.tensor([[[1.0], [1.0], [0.2]]]))
    # By hand, KL(q || class) for query 1, N(0, 1):
    #   A: 0.5 (ln 0.25 + 1/0.25 - 1) = 0.807;  B: 0.5 (ln 3 + 1/3 - 1) = 0.216;
    #   C: 0.5 (9 / 1) = 4.5.  -> B.  (The reverse direction, KL(class || q), would pick A:
    #   0.318 against 0.451, so this case pins the direction.)
    # Query 2, N(2.8, 1): C gives 0.5 * 0.04 = 0.02, far below A and B -> C.
    # Query 3, N(0, 0.2): A: 0.5 (ln 1.25 + 0.8 - 1) = 0.012; B: 0.5 (ln 15 + 0.0667 - 1)
    #   = 0.887 -> A.
    kl_b = 0.5 * (math.log(3.0) + 1 / 3 - 1)
    got = gaussian_kl(q_mean[0, 0], q_logvar[0, 0], class_mean[0, 1], class_logvar[0, 1])
    assert got.item() == pytest.approx(kl_b, rel=1e-5)
    assert kl_classify(q_mean, q_logvar, class_mean, class_logvar).tolist() == [[1, 2, 0]]


def test_lower_bound_parts_and_learning_on_a_fixed_batch():
    torch.manual_seed(0)
    net = NeuralStatistician(**SMALL)
    x = (torch.rand(4, 5, 1, 28, 28) > 0.7).float()
    out = net(x)
    assert out["kl_z"] >= 0 and out["kl_c"] >= 0 and out["recon"] > 0
    torch.testing.assert_close(out["loss"], out["recon"] + out["kl_z"] + out["kl_c"])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    first = None
    for _ in range(30):
        torch.manual_seed(1)  # the same noise each step: the bound's value is comparable
        loss = net(x)["loss"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 20.0  # nats per 784-pixel drawing


def _overrides(arm: str, mirror, root) -> list[str]:
    return [
        *fake_smoke_overrides("statistician_omniglot", arm, mirror, root),
        "dataset.eval_settings=[5w1s,5w5s]",
        "trainer.max_steps=4",
        "eval_every=2",
    ]


@pytest.mark.parametrize("arm", ["statistician", "pixels_1nn"])
def test_each_arm_runs_end_to_end(arm, fake_omniglot, tmp_path, monkeypatch):
    register_tiny_split(monkeypatch)
    rec = run_cfg(_overrides(arm, *fake_omniglot), tmp_path / "runs")
    assert rec.status == "completed", rec.error
    for s in ("5w1s", "5w5s"):
        assert 0.0 <= rec.metrics[f"test/acc_{s}"] <= 1.0
        assert rec.metrics[f"test/acc_{s}_ci95"] >= 0
    assert set(rec.provenance.data["pinned_episodes_sha256"]) == {"5w1s", "5w5s"}
    if arm == "pixels_1nn":
        assert "time/step_s" not in rec.metrics  # evaluated, never trained
        # the fake characters are ink squares: raw-pixel 1-NN is far above chance (0.2)
        assert rec.metrics["test/acc_5w1s"] > 0.5
    else:
        assert rec.metrics["time/step_s"] > 0 and rec.metrics["time/datasets_per_s"] > 0
        assert len(rec.history) == 2


def test_same_pinned_episodes_as_matching_networks(fake_omniglot, tmp_path, monkeypatch):
    # The point of the experiment: one table with matchingnet_omniglot, so both must be
    # scored on the same episodes of the same split.
    register_tiny_split(monkeypatch)
    # (the smoke tiers evaluate different numbers of episodes: set the same here)
    ours = run_cfg(
        [*_overrides("pixels_1nn", *fake_omniglot), "dataset.eval_episodes=20"], tmp_path / "ns"
    )
    theirs = [o.replace("statistician_omniglot", "matchingnet_omniglot") for o in _overrides(
        "pixels_1nn", *fake_omniglot)]  # fmt: skip
    mn = run_cfg([*theirs, "dataset.eval_episodes=20"], tmp_path / "mn")
    for key in ("pinned_episodes_sha256", "split_sha256", "eval_seed", "eval_episodes"):
        assert ours.provenance.data[key] == mn.provenance.data[key]


@pytest.mark.parametrize("tier", ["quick", "paper"])
def test_quick_and_paper_tiers_evaluate_like_matching_networks(tier, tmp_path):
    keys = ("split", "eval_settings", "eval_episodes", "eval_queries", "image_size", "rotations")
    cfgs = [
        compose_cfg([f"+experiment={name}", f"tier={tier}"], tmp_path)
        for name in ("statistician_omniglot", "matchingnet_omniglot")
    ]
    ours, theirs = ({k: c.dataset[k] for k in keys} for c in cfgs)
    assert ours == theirs and ours["eval_episodes"] == 1000


def test_same_config_and_seed_same_metrics(fake_omniglot, tmp_path, monkeypatch):
    register_tiny_split(monkeypatch)
    a = run_cfg(_overrides("statistician", *fake_omniglot), tmp_path / "a")
    b = run_cfg(_overrides("statistician", *fake_omniglot), tmp_path / "b")
    keys = [k for k in a.metrics if k.startswith("test/")]
    assert keys and all(a.metrics[k] == b.metrics[k] for k in keys)


def test_embedding_only_the_used_drawings_changes_nothing():
    import functools

    from experiments.neural_statistician.task import StatisticianTask
    from shortsci_bench.data.episodes import pinned_episodes

    torch.manual_seed(0)
    task = StatisticianTask(NeuralStatistician(**SMALL).eval(), functools.partial(torch.optim.Adam))
    images = (torch.rand(12, 20, 28, 28) * 255).to(torch.uint8)
    index = pinned_episodes(12, 5, 1, 5, 30)
    full = task.episode_accuracy(task.embed_all(images), index, 5, 1)
    used = torch.zeros(12, 20, dtype=torch.bool)
    used[index["classes"][..., None], index["drawers"]] = True
    assert 0 < used.sum() < used.numel()  # a strict subset, or the test shows nothing
    task._used = used
    torch.testing.assert_close(task.episode_accuracy(task.embed_all(images), index, 5, 1), full)
