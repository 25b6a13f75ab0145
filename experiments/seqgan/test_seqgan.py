"""SeqGAN: the oracle's likelihood is a normalised distribution (checked by enumerating
every sequence of a tiny oracle), the oracle NLL of its own samples matches the exact
entropy, rollouts keep their prefixes and sample the model's conditionals, the
discriminator's shapes, and the measured variance of the Monte Carlo reward and
policy-gradient estimates matches the exact variance computed by enumeration on a tiny
model (within a tolerance from the measurement's own standard error)."""

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
    rollout_variance,
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


class _TableDiscriminator(torch.nn.Module):
    """A logit per full sequence (vocabulary 3, length 3), drawn N(0, 2^2): rewards spread
    over (0, 1), so that rollouts vary (a random CNN's rewards all sit near 0.5)."""

    def __init__(self):
        super().__init__()
        self.logits = torch.nn.Parameter(2.0 * torch.randn(27))

    def forward(self, seqs):
        return self.logits[(seqs * torch.tensor([9, 3, 1])).sum(1)]


def _tiny():
    torch.manual_seed(0)
    gen = LSTMLanguageModel(vocab=3, embed=4, hidden=5, length=3)
    with torch.no_grad():
        for p in gen.parameters():  # conditionals away from uniform, but not degenerate
            p.mul_(2.0)
    return gen, _TableDiscriminator().eval()


def _exact_rewards(gen, disc, seqs):
    """For each sequence and t < T: the exact mean and variance of D over the completions
    of the prefix y_1..y_t under G, by enumerating them."""
    length = gen.length
    full = _all_sequences(gen.vocab, length)
    logp, d = gen.log_prob(full).detach().double(), torch.sigmoid(disc(full)).detach().double()
    mean, var = torch.zeros(len(seqs), length - 1), torch.zeros(len(seqs), length - 1)
    m4 = torch.zeros(len(seqs), length - 1)
    for i, y in enumerate(seqs):
        for t in range(1, length):
            match = (full[:, :t] == y[:t]).all(1)
            w = logp[match].exp()
            w = w / w.sum()
            mu = (w * d[match]).sum()
            mean[i, t - 1] = mu
            var[i, t - 1] = (w * (d[match] - mu) ** 2).sum()
            m4[i, t - 1] = (w * (d[match] - mu) ** 4).sum()
    return full, logp, d, mean.double(), var.double(), m4.double()


def test_rollout_completions_follow_the_model():
    """Completing one prefix many times gives each continuation with its probability."""
    gen, _ = _tiny()
    prefix = torch.tensor([[1]]).repeat(20000, 1)
    full = gen.rollout(prefix, generator=torch.Generator().manual_seed(0))
    seqs = _all_sequences(3, 3)
    p = gen.log_prob(seqs).detach().exp()
    cond = p[seqs[:, 0] == 1] / p[seqs[:, 0] == 1].sum()
    freq = torch.bincount(full[:, 1] * 3 + full[:, 2], minlength=9).double() / len(full)
    assert float((freq - cond).abs().max()) < 0.015


def test_reward_variance_matches_the_exact_variance():
    """var/reward_N{N} against the exact Var_1 / N of the mean of N rollouts (sequences fixed),
    averaged over sequences and steps; tolerance 5 standard errors of the sample variance
    (from the exact fourth central moment of the N-rollout mean)."""
    gen, disc = _tiny()
    repeats, n_seqs = 300, 4
    out = rollout_variance(gen, disc, (1, 4), repeats, n_seqs, 2, torch.Generator().manual_seed(7))
    fixed = gen.sample(n_seqs, generator=torch.Generator().manual_seed(7))  # the same draws
    _, _, _, _, var, m4 = _exact_rewards(gen, disc, fixed)
    assert float(var.mean()) > 1e-3  # a case where rollouts vary at all
    for n in (1, 4):
        s2, mu4 = var / n, m4 / n**3 + 3 * (n - 1) * var**2 / n**3  # the N-mean's moments
        var_of_s2 = (mu4 - s2**2 * (repeats - 3) / (repeats - 1)) / repeats
        se = float(var_of_s2.sum().sqrt() / var.numel())
        assert abs(out[f"var/reward_N{n}"] - float(s2.mean())) < 5 * se
    assert out["var/reward_ratio_4_1"] == pytest.approx(out["var/reward_N4"] / out["var/reward_N1"])


def test_policy_gradient_variance_matches_the_exact_variance():
    """var/pg_N{N}, the trace of the covariance of the policy-gradient estimate for a fresh
    batch of B sequences, against its exact value by the law of total variance over all
    sequences: Var = (Var_Y E[g | Y] + E_Y sum_t |grad log G(y_t)|^2 Var_1(Q_t | Y) / N) / B.
    Tolerance: 25% (the sample variance of 300 repeats of a 30-odd-dimensional vector)."""
    gen, disc = _tiny()
    full, logp, d, mean, var, _ = _exact_rewards(gen, disc, _all_sequences(3, 3))
    params = [p for p in gen.parameters()]
    p_seq = logp.exp()
    cond_mean, noise = [], []
    for i, y in enumerate(full):
        grads_t = []
        for t in range(3):  # gradient of -log G(y_t | y_<t), one step at a time
            q = torch.zeros(1, 3)
            q[0, t] = 1.0
            gl = torch.autograd.grad(policy_gradient_loss(gen, y[None], q), params)
            grads_t.append(torch.cat([g.reshape(-1) for g in gl]).double())
        exact_q = torch.cat([mean[i], d[i : i + 1]])
        cond_mean.append(sum(g * q for g, q in zip(grads_t, exact_q)))
        noise.append(sum(float(grads_t[t] @ grads_t[t]) * float(var[i, t]) for t in range(2)))
    cond_mean = torch.stack(cond_mean)
    mu = (p_seq[:, None] * cond_mean).sum(0)
    between = float((p_seq * ((cond_mean - mu) ** 2).sum(1)).sum())
    within = float((p_seq * torch.tensor(noise, dtype=torch.double)).sum())
    batch = 2
    out = rollout_variance(gen, disc, (1, 4), 300, 2, batch, torch.Generator().manual_seed(3))
    for n in (1, 4):
        exact = (between + within / n) / batch
        assert out[f"var/pg_N{n}"] == pytest.approx(exact, rel=0.25)


@pytest.mark.parametrize("arm", ["seqgan", "mle", "seqgan_nopretrain"])
def test_smoke_run(arm, tmp_path):
    record = run_cfg(
        ["+experiment=seqgan_oracle", f"arm={arm}", "tier=smoke", "logger=none"], tmp_path / "runs"
    )
    assert record is not None and record.status == "completed", record and record.error
    m = record.metrics
    # plumbing only: finite, positive oracle NLLs before and after the adversarial phase
    assert 0 < m["nll/oracle"] and 0 < m["nll/oracle_pretrained"]
