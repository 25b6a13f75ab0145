"""pf_charlm: the free-running path feeds back the model's own samples, the discriminator
sees only hidden states, the probe measures what it says, smoke runs of both arms, the
generator's adversarial term, and a killed run that resumes bit for bit."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from experiments.professor_forcing.model import ProfessorForcing, sample_inverse_cdf
from experiments.professor_forcing.task import linear_probe_accuracy
from tests.conftest import assert_resumes_exactly, run_cfg

SMOKE = ["+experiment=pf_charlm", "tier=smoke", "logger=none"]


def _model(seed: int = 0) -> ProfessorForcing:
    torch.manual_seed(seed)
    return ProfessorForcing(vocab_size=7, hidden=6, embed=4, disc_hidden=5, disc_mlp=5).double()


def test_inverse_cdf_sampling_follows_the_probabilities():
    logits = torch.log(torch.tensor([[0.2, 0.5, 0.3]]))
    pick = lambda u: int(sample_inverse_cdf(logits, torch.tensor([u])))  # noqa: E731
    assert [pick(0.1), pick(0.25), pick(0.69), pick(0.71), pick(0.999)] == [0, 1, 1, 2, 2]


def test_free_running_feeds_back_its_own_samples_not_the_data():
    m = _model()
    x = torch.randint(0, 7, (3, 9))
    u = torch.rand(3, 9, dtype=torch.float64)
    logits, hs, inputs = m.generator.free_running(x[:, 0], u)
    # each input after the first is the sample drawn from the previous step's logits
    assert torch.equal(inputs[:, 0], x[:, 0])
    for t in range(1, 9):
        assert torch.equal(inputs[:, t], sample_inverse_cdf(logits[:, t - 1], u[:, t - 1]))
    # and the hidden states equal a teacher-forced run on those inputs: the model's own
    # symbols, not the data (which it never reads after x[:, 0])
    _, hs_on_own = m.generator.teacher_forced(inputs)
    torch.testing.assert_close(hs, hs_on_own)
    other = x.clone()
    other[:, 1:] = (other[:, 1:] + 1) % 7
    torch.testing.assert_close(m.generator.free_running(other[:, 0], u)[1], hs)
    # a read-out that puts all mass on symbol 4 makes every fed-back input 4
    with torch.no_grad():
        m.generator.out.weight.zero_()
        m.generator.out.bias.fill_(-50.0)
        m.generator.out.bias[4] = 50.0
    assert (m.generator.free_running(x[:, 0], u)[2][:, 1:] == 4).all()


def test_no_gradient_through_the_sampled_symbols():
    """Free-running states depend on the read-out only through the discrete samples, so
    the discriminator's loss on them gives the read-out no gradient while the recurrent
    weights get one."""
    m = _model()
    x = torch.randint(0, 7, (4, 8))
    _, hs, _ = m.generator.free_running(x[:, 0], torch.rand(4, 8, dtype=torch.float64))
    s = m.discriminator(hs)
    F.binary_cross_entropy_with_logits(s, torch.ones_like(s)).backward()
    assert m.generator.out.weight.grad is None
    assert m.generator.rnn.weight_hh_l0.grad.abs().sum() > 0


def test_the_discriminator_sees_only_hidden_states():
    """Its input is a (B, T, H) hidden-state sequence: the same states give the same score
    whatever symbols produced them, and its input width is the generator's hidden size."""
    m = _model()
    assert m.discriminator.rnn.input_size == m.generator.hidden
    x = torch.randint(0, 7, (2, 5))
    _, hs = m.generator.teacher_forced(x)
    torch.testing.assert_close(m.discriminator(hs), m.discriminator(hs.detach().clone()))
    with pytest.raises(RuntimeError):
        m.discriminator(F.one_hot(x, 7).double())  # symbols are not a valid input


def test_probe_accuracy_is_chance_on_one_distribution_and_high_on_two():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(64, 10, 6, generator=g, dtype=torch.float64)
    b = torch.randn(64, 10, 6, generator=g, dtype=torch.float64)
    assert abs(linear_probe_accuracy(a, b) - 0.5) < 0.05
    # a unit shift in each of 6 dimensions: the Bayes accuracy is Phi(sqrt(6) / 2) = 0.890
    bayes = 0.5 * (1 + math.erf(math.sqrt(6) / 2 / math.sqrt(2)))
    assert abs(linear_probe_accuracy(a, b + 1.0) - bayes) < 0.03
    # a difference in spread alone is seen through the squared features
    assert linear_probe_accuracy(a, 3.0 * b) > 0.8  # a mean-only probe would be at chance


@pytest.mark.parametrize("arm", ["professor", "teacher"])
def test_smoke_run_of_each_arm(arm, tmp_path):
    record = run_cfg([*SMOKE, f"arm={arm}"], tmp_path)
    assert record.status == "completed"
    m = record.metrics
    assert 0.0 < m["test/bpc"] < 8.0 and 0.0 < m["val/bpc"] < 8.0
    for key in ("behaviour/probe_acc", "behaviour/probe_acc_long", "disc/acc"):
        assert 0.0 <= m[key] <= 1.0
    assert (arm == "teacher") == (record.provenance.config["task"]["adversarial_weight"] == 0.0)
    if arm == "teacher":
        assert m["disc/adversarial_frac"] == 0.0


def test_the_adversarial_term_moves_the_generator(tmp_path):
    """With the gate open (min_disc_acc 0) the professor arm's generator trains on more than
    the NLL: its weights after the same steps differ from the teacher arm's."""
    common = [*SMOKE, "task.min_disc_acc=0.0", "trainer.max_steps=10"]
    prof = run_cfg([*common, "arm=professor"], tmp_path / "p")
    teach = run_cfg([*common, "arm=teacher"], tmp_path / "t")
    assert prof.metrics["disc/adversarial_frac"] == 1.0
    assert prof.metrics["val/bpc"] != teach.metrics["val/bpc"]


@pytest.mark.slow  # two subprocess runs, about a minute: CI runs it (make test-slow)
def test_a_killed_run_resumes_bit_identically(tmp_path):
    """SIGKILL after step 12 (last checkpoint at step 10), then the same command: the record
    equals an uninterrupted run's, history and metrics (time aside)."""
    args = [*SMOKE, "arm=professor", "task.min_disc_acc=0.0"]
    assert_resumes_exactly(args, tmp_path, kill_at=12)
