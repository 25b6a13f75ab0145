"""SeqGAN (built, smoke-tested, not yet run at quick or paper tier): the oracle's likelihood is a normalised distribution (checked by
enumerating every sequence of a tiny oracle), the oracle NLL of its own samples matches
the exact entropy, rollouts keep their prefixes, and the discriminator's shapes."""

from __future__ import annotations

import itertools

import pytest
import torch

from experiments.seqgan.model import (
    CNNDiscriminator,
    LSTMLanguageModel,
    mc_rewards,
    oracle,
    oracle_nll,
    policy_gradient_loss,
)
from tests.conftest import run_cfg


def _all_sequences(vocab: int, length: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(vocab), repeat=length)), dtype=torch.long)


def test_oracle_likelihood_sums_to_one_over_all_sequences():
    model = oracle(vocab=3, embed=4, hidden=5, length=4, seed=0)
    seqs = _all_sequences(3, 4)  # 81 sequences
    p = model.log_prob(seqs).double().exp()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-5)
    assert float(p.max()) > 2.0 / 81  # N(0, 1) weights: far from uniform


def test_log_prob_is_the_product_of_step_conditionals():
    model = oracle(vocab=3, embed=4, hidden=5, length=3, seed=1)
    seqs = _all_sequences(3, 3)
    joint = model.log_prob(seqs).exp()
    # p(y1) from prefixes of length 1: sum over continuations
    for y1 in range(3):
        marginal = joint[seqs[:, 0] == y1].sum()
        first = torch.softmax(model.out(model.cell(model.start[None], None)[0]), -1)[0, y1]
        assert float(marginal) == pytest.approx(float(first), abs=1e-5)


def test_oracle_nll_of_its_own_samples_is_its_entropy():
    """E_{Y ~ oracle}[-log p(Y)] = H(oracle), computed exactly by enumeration; the sample
    mean lies within 5 standard errors."""
    model = oracle(vocab=3, embed=4, hidden=5, length=4, seed=2)
    seqs = _all_sequences(3, 4)
    logp = model.log_prob(seqs).double()
    entropy = float(-(logp.exp() * logp).sum())
    samples = model.sample(20000, generator=torch.Generator().manual_seed(0))
    per_seq = -model.log_prob(samples).double()
    se = float(per_seq.std() / len(per_seq) ** 0.5)
    assert abs(oracle_nll(model, samples) - entropy) < 5 * se
    # and sampling frequencies follow the enumerated probabilities
    index = (samples * torch.tensor([27, 9, 3, 1])).sum(1)
    freq = torch.bincount(index, minlength=81).double() / len(samples)
    assert float((freq - logp.exp()).abs().max()) < 0.02


def test_rollout_keeps_the_prefix_and_completes_to_full_length():
    model = LSTMLanguageModel(vocab=7, embed=4, hidden=5, length=6)
    prefix = torch.randint(0, 7, (10, 2), generator=torch.Generator().manual_seed(0))
    full = model.rollout(prefix, generator=torch.Generator().manual_seed(1))
    assert full.shape == (10, 6) and torch.equal(full[:, :2], prefix)
    assert model.sample(4).shape == (4, 6)


def test_discriminator_shapes():
    d = CNNDiscriminator(vocab=7)
    logits = d(torch.randint(0, 7, (3, 20)))
    assert logits.shape == (3,)


def test_policy_gradient_with_unit_rewards_is_maximum_likelihood():
    gen = LSTMLanguageModel(vocab=5, embed=4, hidden=6, length=5)
    seqs = gen.sample(8, generator=torch.Generator().manual_seed(0))
    pg = policy_gradient_loss(gen, seqs, torch.ones(8, 5))
    assert float(pg) == pytest.approx(float(-gen.log_prob(seqs).mean()), rel=1e-6)


def test_mc_rewards_shape_range_and_last_step():
    gen = LSTMLanguageModel(vocab=5, embed=4, hidden=6, length=5)
    disc = CNNDiscriminator(vocab=5, embed=4, widths=(2, 3), filters=3)
    seqs = gen.sample(7, generator=torch.Generator().manual_seed(1))
    q = mc_rewards(gen, disc, seqs, n_rollouts=4, generator=torch.Generator().manual_seed(2))
    assert q.shape == (7, 5) and bool(((q > 0) & (q < 1)).all())
    disc.eval()
    assert torch.allclose(q[:, -1], torch.sigmoid(disc(seqs)))


@pytest.mark.parametrize("arm", ["seqgan", "mle"])
def test_smoke_run(arm, tmp_path):
    record = run_cfg(
        ["+experiment=seqgan_oracle", f"arm={arm}", "tier=smoke", "logger=none"], tmp_path / "runs"
    )
    assert record is not None and record.status == "completed", record and record.error
    m = record.metrics
    # plumbing only: finite, positive oracle NLLs before and after the adversarial phase
    assert 0 < m["nll/oracle"] and 0 < m["nll/oracle_pretrained"]
