"""mi_charlm: the MI cell equations against a hand computation, the pinned corpus, the
probes, and smoke runs of every arm composed from the real configs."""

from __future__ import annotations

import math

import pytest
import torch

from experiments.multiplicative_integration import data as corpus
from experiments.multiplicative_integration.model import LSTM, CharLanguageModel, TanhRNN
from experiments.multiplicative_integration.task import bits_per_char, gradient_flow
from tests.conftest import run_cfg


def _set(core, W, U, b, alpha=None, beta1=None, beta2=None):
    with torch.no_grad():
        core.W.weight.copy_(torch.tensor(W, dtype=torch.double))
        core.U.weight.copy_(torch.tensor(U, dtype=torch.double))
        core.b.copy_(torch.tensor(b, dtype=torch.double))
        for name, value in (("alpha", alpha), ("beta1", beta1), ("beta2", beta2)):
            if value is not None:
                getattr(core, name).copy_(torch.tensor(value, dtype=torch.double))


def test_mi_rnn_step_matches_the_equation_by_hand():
    """Two units, two symbols, two steps: phi(alpha*Wx*Uh + beta1*Uh + beta2*Wx + b)."""
    core = TanhRNN(vocab_size=2, hidden=2, multiplicative=True).double()
    # W's rows are the symbols (an embedding): W x for symbol 1 is [0.5, -1.0]
    _set(core, W=[[0.2, 0.3], [0.5, -1.0]], U=[[1.0, 2.0], [-0.5, 0.25]], b=[0.1, -0.2],
         alpha=[2.0, -1.0], beta1=[0.5, 1.5], beta2=[1.0, 0.0])  # fmt: skip
    out, _ = core(torch.tensor([[1, 0]]))
    # t = 1: h0 = 0, so Uh = 0 and only beta2*Wx + b remains
    h1 = [math.tanh(1.0 * 0.5 + 0.1), math.tanh(0.0 * -1.0 - 0.2)]
    # t = 2: Wx = [0.2, 0.3], Uh = U h1
    uh = [1.0 * h1[0] + 2.0 * h1[1], -0.5 * h1[0] + 0.25 * h1[1]]
    wx = [0.2, 0.3]
    alpha, beta1, beta2, b = [2.0, -1.0], [0.5, 1.5], [1.0, 0.0], [0.1, -0.2]
    h2 = [
        math.tanh(alpha[k] * wx[k] * uh[k] + beta1[k] * uh[k] + beta2[k] * wx[k] + b[k])
        for k in range(2)
    ]
    torch.testing.assert_close(out[0], torch.tensor([h1, h2], dtype=torch.double))


def test_additive_rnn_step_is_the_plain_sum():
    core = TanhRNN(vocab_size=2, hidden=2, multiplicative=False).double()
    _set(core, W=[[0.2, 0.3], [0.5, -1.0]], U=[[1.0, 2.0], [-0.5, 0.25]], b=[0.1, -0.2])
    out, _ = core(torch.tensor([[1, 0]]))
    h1 = [math.tanh(0.5 + 0.1), math.tanh(-1.0 - 0.2)]
    uh = [h1[0] + 2.0 * h1[1], -0.5 * h1[0] + 0.25 * h1[1]]
    h2 = [math.tanh(0.2 + uh[0] + 0.1), math.tanh(0.3 + uh[1] - 0.2)]
    torch.testing.assert_close(out[0], torch.tensor([h1, h2], dtype=torch.double))


def test_mi_with_alpha_zero_and_unit_betas_is_the_additive_cell():
    torch.manual_seed(0)
    mi = TanhRNN(5, 4, multiplicative=True, alpha_init=0.0).double()
    add = TanhRNN(5, 4, multiplicative=False).double()
    add.load_state_dict({k: v for k, v in mi.state_dict().items() if k in add.state_dict()})
    x = torch.randint(0, 5, (3, 6))
    torch.testing.assert_close(mi(x)[0], add(x)[0])
    with torch.no_grad():
        mi.alpha.fill_(1.0)
    assert (mi(x)[0] - add(x)[0]).abs().max() > 1e-3  # the product term is being used


def test_mi_lstm_gates_by_hand():
    """One step from zero state, then a second: every gate uses the MI pre-activation."""
    torch.manual_seed(1)
    core = LSTM(vocab_size=3, hidden=2, multiplicative=True).double()
    with torch.no_grad():
        for p in core.parameters():
            p.copy_(torch.randn_like(p))
    out, _ = core(torch.tensor([[2, 1]]))
    W, U, b = core.W.weight, core.U.weight, core.b
    a, b1, b2 = core.alpha, core.beta1, core.beta2
    h, c = torch.zeros(2, dtype=torch.double), torch.zeros(2, dtype=torch.double)
    for sym in (2, 1):
        wx, uh = W[sym], U @ h
        z = a * wx * uh + b1 * uh + b2 * wx + b
        i, f, g, o = z[0:2], z[2:4], z[4:6], z[6:8]
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
    torch.testing.assert_close(out[0, -1], h.detach())


@pytest.mark.parametrize(
    "cell,extra", [("rnn", 0), ("mi_rnn", 3 * 8), ("lstm", 0), ("mi_lstm", 3 * 32)]
)
def test_mi_adds_three_vectors_per_preactivation(cell, extra):
    lm = CharLanguageModel(cell=cell, vocab_size=10, hidden=8)
    base = CharLanguageModel(cell=cell.removeprefix("mi_"), vocab_size=10, hidden=8)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(lm) - count(base) == extra == lm.mi_parameter_count()


def test_corpus_is_pinned_and_split_contiguously():
    text, digest = corpus.load_corpus()
    assert digest == corpus.CLEANED_SHA256 and len(text) == 269_247
    # link targets gone; of the 3,049 lines with PR references, 14 irregular ones remain
    assert "](http" not in text and text.count("([#") == 14
    ids, alphabet = corpus.encode(text)
    assert len(alphabet) == 93 and "".join(alphabet[i] for i in ids[:200]) == text[:200]
    parts = corpus.split(ids)
    assert torch.equal(torch.cat([parts[s] for s in corpus.SPLITS]), ids)


def test_a_changed_source_fails_loudly(monkeypatch):
    monkeypatch.setattr(corpus, "SOURCE_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match="pinned"):
        corpus.load_corpus()


def test_windows_are_seeded_and_shifted_by_one():
    ids = torch.arange(1000)
    x, y = corpus.random_windows(ids, 4, 7, torch.Generator().manual_seed(3))
    x2, _ = corpus.random_windows(ids, 4, 7, torch.Generator().manual_seed(3))
    assert torch.equal(x, x2) and torch.equal(y, x + 1)
    rows_x, rows_y = corpus.as_rows(ids, 3)
    assert rows_x.shape == (3, 333) and torch.equal(rows_y, rows_x + 1)


def test_bits_per_char_of_a_uniform_model_is_log2_vocab():
    class Uniform(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(*x.shape, 16)

    x = torch.randint(0, 16, (2, 9))
    bpc, _, count = bits_per_char(Uniform(), [(x, x)])
    assert count == 18 and bpc == pytest.approx(4.0)


def test_gradient_flow_probe_sees_the_recurrence():
    """With U = 0 nothing flows back (the first norm is 0), with U != 0 it does."""
    torch.manual_seed(0)
    lm = CharLanguageModel(cell="rnn", vocab_size=6, hidden=5).double()
    x = torch.randint(0, 6, (2, 8))
    norms = gradient_flow(lm, x, x)
    assert len(norms) == 8 and norms[0] > 0 and norms[-1] > 0
    with torch.no_grad():
        lm.core.U.weight.zero_()
    assert gradient_flow(lm, x, x)[0] == 0.0


@pytest.mark.parametrize("arm", ["rnn", "mi_rnn", "lstm", "mi_lstm"])
def test_smoke_run_of_each_arm(arm, tmp_path):
    record = run_cfg(["+experiment=mi_charlm", f"arm={arm}", "tier=smoke"], tmp_path)
    assert record.status == "completed"
    assert 0.0 < record.metrics["test/bpc"] < 8.0 and 0.0 < record.metrics["val/bpc_mean"] < 8.0
    assert (record.metrics["params/mi_extra_frac"] > 0) == arm.startswith("mi_")
    assert record.provenance.data["checksums"]["cleaned.sha256"] == corpus.CLEANED_SHA256
    assert record.provenance.config["model"]["cell"] == arm


def test_same_config_and_seed_give_the_same_metrics(tmp_path):
    overrides = ["+experiment=mi_charlm", "arm=mi_rnn", "tier=smoke"]
    first = run_cfg(overrides, tmp_path / "a")
    second = run_cfg(overrides, tmp_path / "b")
    assert first.metrics["test/bpc"] == second.metrics["test/bpc"]
    assert first.metrics["val/bpc_mean"] == second.metrics["val/bpc_mean"]
