"""fastweights_assoc: the associative retrieval data, the fast weights RNN in its two forms,
and smoke runs of every arm composed from the real configs."""

from __future__ import annotations

import pytest
import torch

from experiments.fast_weights import data as ar
from experiments.fast_weights.model import IRNN, AssociativeRetrievalNet, FastWeightsRNN
from tests.conftest import run_cfg


def test_strings_follow_the_paper_format():
    tokens, answers = ar.generate_assoc_retrieval(500, n_pairs=4, seed=3)
    assert tokens.shape == (500, 11) and answers.shape == (500,)
    for row, answer in zip(tokens, answers):
        text = ar.decode(row)  # e.g. c9k8j3f1??c
        letters, digits = text[0:8:2], text[1:8:2]
        assert text[8:10] == "??"
        assert all(c.isalpha() for c in letters) and all(c.isdigit() for c in digits)
        assert len(set(letters)) == 4  # distinct keys, so the answer is unique
        query = text[10]
        assert query in letters
        assert int(digits[letters.index(query)]) == int(answer)


def test_generation_is_seeded():
    a = ar.generate_assoc_retrieval(100, 8, seed=0)
    b = ar.generate_assoc_retrieval(100, 8, seed=0)
    c = ar.generate_assoc_retrieval(100, 8, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_paper_sized_splits_match_their_pinned_checksums():
    dm = ar.AssociativeRetrievalDataModule(n_pairs=8, data_seed=0)
    dm.setup()
    assert dm.pinned == {"train": True, "val": True, "test": True}
    assert [len(dm.splits[s][0]) for s in ar.SPLITS] == [100_000, 10_000, 20_000]
    prov = dm.provenance()
    assert prov["checksums"]["train.sha256"] == ar.PINNED_SHA256[(8, 0, "train", 100_000)]
    # the three splits come from separate streams: no string set is a copy of another
    assert not torch.equal(dm.splits["val"][0][:100], dm.splits["test"][0][:100])


def test_a_changed_split_fails_loudly(monkeypatch):
    monkeypatch.setitem(ar.PINNED_SHA256, (2, 0, "val", 10), "0" * 64)
    dm = ar.AssociativeRetrievalDataModule(n_pairs=2, n_train=10, n_val=10, n_test=10)
    with pytest.raises(RuntimeError, match="pinned"):
        dm.setup()


# Without layer norm the fast weights' feedback grows without bound (why the paper uses
# it), so that case runs with a small eta.
@pytest.mark.parametrize(
    "inner_steps,layer_norm,eta", [(1, True, 0.5), (2, True, 0.5), (3, False, 0.01)]
)
def test_memory_and_recurrent_forms_agree(inner_steps, layer_norm, eta):
    torch.manual_seed(0)
    settings = dict(eta=eta, lam=0.9, inner_steps=inner_steps, layer_norm=layer_norm)
    memory = FastWeightsRNN(6, 12, form="memory", **settings).double()
    recurrent = FastWeightsRNN(6, 12, form="recurrent", **settings).double()
    recurrent.load_state_dict(memory.state_dict())
    with torch.no_grad():  # a non-trivial slow W, so h(t) varies over time
        memory.W.weight.add_(0.3 * torch.randn(12, 12, dtype=torch.double))
        recurrent.W.weight.copy_(memory.W.weight)
    x = torch.randn(5, 9, 6, dtype=torch.double)
    out_m, out_r = memory(x), recurrent(x)
    assert out_m.abs().sum() > 0
    torch.testing.assert_close(out_m, out_r, rtol=1e-10, atol=1e-10)
    grads_m = torch.autograd.grad(out_m.square().sum(), list(memory.parameters()))
    grads_r = torch.autograd.grad(out_r.square().sum(), list(recurrent.parameters()))
    for gm, gr in zip(grads_m, grads_r):
        torch.testing.assert_close(gm, gr, rtol=1e-8, atol=1e-10)


def test_fast_weights_carry_the_recent_past():
    """With eta = 0 the net is an ordinary layer-normed RNN; with eta > 0 the outer-product
    memory changes the final state, so it is being read."""
    torch.manual_seed(0)
    with_fast = FastWeightsRNN(6, 12, eta=0.5).double()
    without = FastWeightsRNN(6, 12, eta=0.0).double()
    without.load_state_dict(with_fast.state_dict())
    x = torch.randn(4, 7, 6, dtype=torch.double)
    assert (with_fast(x) - without(x)).abs().max() > 1e-3


def test_irnn_starts_from_the_identity():
    irnn = IRNN(5, 7)
    assert torch.equal(irnn.rnn.weight_hh_l0.detach(), torch.eye(7))
    assert irnn.rnn.nonlinearity == "relu"


@pytest.mark.parametrize("core", ["fast_weights", "irnn", "lstm"])
@pytest.mark.parametrize("hidden", [20, 100])
def test_every_core_classifies_digits(core, hidden):
    net = AssociativeRetrievalNet(core=core, hidden=hidden)
    assert net(torch.randint(0, 37, (3, 19))).shape == (3, 10)


@pytest.mark.parametrize("arm", ["fast_weights", "irnn", "lstm"])
def test_smoke_run_of_each_arm(arm, tmp_path):
    record = run_cfg(["+experiment=fastweights_assoc", f"arm={arm}", "tier=smoke"], tmp_path)
    assert record.status == "completed"
    for key in ("test/err", "test/acc", "val/err_mean", "val/err"):
        assert 0.0 <= record.metrics[key] <= 1.0, key
    assert record.history and "val/err" in record.history[-1]
    assert record.provenance.data["checksums_pinned"]["train"] is True
    assert record.provenance.config["model"]["core"] == arm


def test_same_config_and_seed_give_the_same_metrics(tmp_path):
    overrides = ["+experiment=fastweights_assoc", "arm=fast_weights", "tier=smoke"]
    first = run_cfg(overrides, tmp_path / "a")
    second = run_cfg(overrides, tmp_path / "b")
    assert first.metrics["test/err"] == second.metrics["test/err"]
    assert first.metrics["val/err_mean"] == second.metrics["val/err_mean"]
