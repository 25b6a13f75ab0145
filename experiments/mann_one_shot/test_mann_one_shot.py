"""MANN (Santoro et al. 2016): the LRUA write rule by hand, the label offset, the baselines, a run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from experiments.mann_one_shot.model import (
    MANN,
    StreamNearestNeighbour,
    cosine_read,
    least_used,
    lrua_write,
    previous_labels,
    update_usage,
)
from experiments.mann_one_shot.task import instance_numbers, label_exclusion_accuracy
from shortsci_bench.data import mirror as mirror_mod
from shortsci_bench.data.episodes import index_sha256, pinned_sequences
from tests.conftest import run_cfg
from tests.omniglot_fake import fake_smoke_overrides, register_tiny_split

torch.set_num_threads(1)


def test_least_used_marks_the_n_smallest_usages():
    usage = torch.tensor([[0.3, 0.1, 0.5, 0.2]])
    assert least_used(usage, 1).tolist() == [[0, 1, 0, 0]]
    assert least_used(usage, 2).tolist() == [[0, 1, 0, 1]]
    assert least_used(torch.zeros(1, 4), 2).tolist() == [[1, 1, 0, 0]]  # ties: lower index


def test_lrua_write_by_hand():
    # 4 slots of width 2, one head. Hand computation:
    #   sigmoid(0) = 0.5; least used of w^u_{t-1} = [.3, .1, .5, .2] is slot 1
    #   w^w = 0.5 [.1, .2, .3, .4] + 0.5 [0, 1, 0, 0] = [.05, .6, .15, .2]
    #   slot 1 is zeroed, then M(i) += w^w(i) k with k = [1, -1]
    memory = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]]])
    usage = torch.tensor([[0.3, 0.1, 0.5, 0.2]])
    read_prev = torch.tensor([[[0.1, 0.2, 0.3, 0.4]]])
    new, write = lrua_write(
        memory,
        usage,
        read_prev,
        least_used(usage, 1),
        torch.zeros(1, 1),
        torch.tensor([[[1.0, -1.0]]]),
    )
    assert torch.allclose(write, torch.tensor([[[0.05, 0.6, 0.15, 0.2]]]))
    expected = torch.tensor([[[1.05, -0.05], [0.6, -0.6], [1.15, 0.85], [2.2, -0.2]]])
    assert torch.allclose(new, expected)
    # a strongly negative gate writes only to the least-used slot, which starts from zero
    new, write = lrua_write(
        memory,
        usage,
        read_prev,
        least_used(usage, 1),
        torch.full((1, 1), -50.0),
        torch.tensor([[[3.0, 4.0]]]),
    )
    assert torch.allclose(write, torch.tensor([[[0.0, 1.0, 0.0, 0.0]]]), atol=1e-6)
    assert torch.allclose(new[0, 1], torch.tensor([3.0, 4.0])) and torch.allclose(
        new[0, 0], memory[0, 0]
    )
    # usage: gamma w^u + w^r + w^w
    u = update_usage(usage, torch.tensor([[[0.0, 0.0, 1.0, 0.0]]]), write, gamma=0.5)
    assert torch.allclose(u, torch.tensor([[0.15, 1.05, 1.25, 0.1]]), atol=1e-6)


def test_cosine_read_prefers_the_matching_row():
    memory = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]])  # a zeroed row is harmless
    w, r = cosine_read(memory, torch.tensor([[[2.0, 0.0]]]))
    e = torch.exp(torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(w[0, 0], e / e.sum(), atol=1e-6)
    assert torch.allclose(
        r[0, 0],
        (e / e.sum())[0] * torch.tensor([1.0, 0.0]) + (e / e.sum())[1] * torch.tensor([0.0, 1.0]),
        atol=1e-6,
    )


def test_labels_arrive_one_step_late():
    y = torch.tensor([[2, 0, 1]])
    assert previous_labels(y, 3).tolist() == [[[0, 0, 0], [0, 0, 1], [1, 0, 0]]]
    torch.manual_seed(0)
    for memory in ("lrua", "none"):
        net = MANN(
            input_size=16,
            n_classes=3,
            controller_size=8,
            memory=memory,
            memory_slots=6,
            memory_width=4,
            read_heads=2,
        )
        x, y = torch.rand(2, 7, 16), torch.randint(0, 3, (2, 7))
        out = net(x, y)
        changed = y.clone()
        changed[:, 4] = (changed[:, 4] + 1) % 3  # change y_4
        out2 = net(x, changed)
        assert torch.equal(out[:, :5], out2[:, :5])  # steps 0..4 never see y_4
        assert not torch.allclose(out[:, 5], out2[:, 5])  # step 5 does


def test_stream_nearest_neighbour_and_instance_numbers():
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]]])
    y = torch.tensor([[1, 0, 1, 0]])
    pred = StreamNearestNeighbour(n_classes=2)(x, y).argmax(-1)
    assert pred.tolist() == [[0, 1, 1, 0]]  # step 0 guesses 0; step 1 can only name label 1
    assert instance_numbers(y, 2).tolist() == [[1, 1, 2, 2]]


def test_label_exclusion_chance_by_hand():
    # 3 classes: stream c0 c1 c0 c2 c1
    #   c0 new, nothing used: 1/3; c1 new, 1 used: 1/2; c0 seen, 2 used: 1/2;
    #   c2 new, 2 used: 1/1; c1 seen, 3 used: 1/3
    y = torch.tensor([[0, 1, 0, 2, 1]])
    got = label_exclusion_accuracy(y, 3)
    assert torch.allclose(got, torch.tensor([[1 / 3, 1 / 2, 1 / 2, 1.0, 1 / 3]]))


def test_claims_precondition_is_the_chance_line_of_the_pinned_streams():
    # mann_one_shot's claims require the MANN to beat this chance line at the 2nd presentation;
    # the number in the YAML must be the one the pinned test streams give.
    idx = pinned_sequences(423, 5, 10, 1000)
    y = torch.arange(5).repeat_interleave(10)[idx["order"]]
    chance = label_exclusion_accuracy(y, 5)
    at2 = (instance_numbers(y, 5) == 2).float()
    expected = float(((chance * at2).sum(1) / at2.sum(1)).mean())
    path = Path(__file__).parent / "claims.yaml"
    claims = yaml.safe_load(path.read_text())
    thresholds = {
        r["threshold"]
        for c in claims["claims"]
        for r in c.get("requires", [])
        if r["metric"] == "test/acc_inst2"
    }
    assert thresholds and all(abs(t - expected) < 5e-4 for t in thresholds), (thresholds, expected)


def test_mann_learns_a_fixed_stream():
    torch.manual_seed(0)
    net = MANN(
        input_size=16, n_classes=3, controller_size=32, memory_slots=8, memory_width=8, read_heads=2
    )
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    x, y = torch.rand(4, 12, 16), torch.randint(0, 3, (4, 12))
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(net(x, y).reshape(-1, 3), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1


@pytest.mark.parametrize("arm", ["mann_lrua", "lstm", "knn"])
def test_each_arm_runs_end_to_end(arm, fake_omniglot, tmp_path, monkeypatch):
    register_tiny_split(monkeypatch)
    mirror, root = fake_omniglot
    overrides = [
        *fake_smoke_overrides("mann_omniglot", arm, mirror, root),
        "dataset.eval_episodes=20",
        "trainer.max_steps=2",
        "eval_every=2",
    ]
    rec = run_cfg(overrides, tmp_path / "runs")
    assert rec.status == "completed", rec.error
    for k in (1, 2, 3, 4, 5, 10):
        assert 0.0 <= rec.metrics[f"test/acc_inst{k}"] <= 1.0
    assert rec.provenance.data["image_size"] == 20
    if arm == "knn":
        assert "time/step_s" not in rec.metrics
        # ink-square characters: the 10th presentation is easy for 1-NN, the 1st impossible
        assert rec.metrics["test/acc_inst10"] > 0.8 and rec.metrics["test/acc_inst1"] < 0.3


REAL = mirror_mod.default_mirror()


@pytest.mark.slow
@pytest.mark.skipif(REAL is None or not (REAL / "omniglot").is_dir(), reason="no Omniglot mirror")
@pytest.mark.parametrize("arm", ["mann_lrua", "knn"])
def test_real_smoke_run(arm, tmp_path):
    rec = run_cfg(
        ["+experiment=mann_omniglot", f"arm={arm}", "tier=smoke", "logger=none"], tmp_path
    )
    assert rec.status == "completed", rec.error
    assert rec.provenance.data["pinned_episodes_sha256"] == {
        "5c10i": index_sha256(pinned_sequences(423, 5, 10, 50))
    }
    assert set(rec.metrics) >= {f"test/acc_inst{k}" for k in (1, 2, 3, 4, 5, 10)}
