"""improvedgan_mnist: the pinned balanced label subsets (and their checksum in every record),
the K+1-class unsupervised loss against a hand computation, the weight-norm layers'
data-dependent initialisation, the minibatch-discrimination layer against a hand computation
(and its dependence on the rest of the batch, and its initialisation), the semi-supervised
batch stream, smoke runs of the arms (the supervised arm never touches G; the minibatch arm
steps G three times with the minimax loss and scores its samples) and a killed run that
resumes bit for bit."""

from __future__ import annotations

import math

import pytest
import torch

from experiments.improved_gan.data import SemiSupervisedSteps, balanced_subset, subset_checksum
from experiments.improved_gan.model import ImprovedGAN, MinibatchDiscrimination, WNDense
from experiments.improved_gan.task import unsupervised_loss
from tests.conftest import assert_resumes_exactly, compose_cfg, mnist_available, run_cfg

SMOKE = ["+experiment=improvedgan_mnist", "tier=smoke", "logger=none"]
needs_mnist = pytest.mark.skipif(not mnist_available(), reason="MNIST not prepared")

# sha256 of the sorted indices and labels of label subset 0 (100 labels) of torchvision's
# MNIST training set: pins the subset rule; changing it changes every record's labels
SUBSET0_100 = "92b16e6fb6fe256b23e9af9c55324c92885365a56f0a0c4b22774f2c6a5fda6d"


def fake_targets(n: int = 6000, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("labels", [20, 50, 100, 200])
def test_label_subsets_are_balanced_pinned_and_differ_by_seed(labels):
    y = fake_targets()
    idx = balanced_subset(y, labels, seed=3)
    assert len(idx) == labels and len(idx.unique()) == labels
    assert torch.equal(torch.bincount(y[idx], minlength=10), torch.full((10,), labels // 10))
    assert torch.equal(idx, balanced_subset(y, labels, seed=3))  # the seed pins it
    assert not torch.equal(idx, balanced_subset(y, labels, seed=4))
    assert subset_checksum(idx, y) == subset_checksum(idx.flip(0), y)  # order-free
    assert subset_checksum(idx, y) != subset_checksum(balanced_subset(y, labels, 4), y)
    with pytest.raises(ValueError, match="multiple of 10"):
        balanced_subset(y, labels + 5, seed=3)


@needs_mnist
def test_the_real_subset_checksum_is_pinned_and_in_the_record(tmp_path):
    from hydra.utils import instantiate

    dm = instantiate(compose_cfg([*SMOKE, "seed=0", "dataset.labels=100"]).dataset)
    dm.setup()
    assert dm.checksum == SUBSET0_100
    assert torch.equal(torch.bincount(dm.train[1][dm.label_idx]), torch.full((10,), 10))
    rec = run_cfg([*SMOKE, "arm=supervised", "dataset.labels=100"], tmp_path)
    assert rec.status == "completed", rec.error
    assert rec.provenance.data["label_subset"]["sha256"] == SUBSET0_100


def test_unsupervised_loss_matches_the_k_plus_one_softmax_by_hand():
    """With K real-class logits and the fake class's logit 0, D(x) = P(real) is 1 minus the
    K+1-way softmax of the fake class; the loss is 0.5 E[-log D(real)] + 0.5 E[-log(1 - D(fake))]."""
    unl = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]])
    fake = torch.tensor([[-1.0, -1.0, 3.0]])

    def p_real(row):  # 1 - exp(0) / (exp(0) + sum exp l), written out
        z = sum(math.exp(v) for v in row)
        return z / (1.0 + z)

    by_hand = 0.5 * sum(-math.log(p_real(r)) for r in unl.tolist()) / 2 + 0.5 * sum(
        -math.log(1 - p_real(r)) for r in fake.tolist()
    )
    assert float(unsupervised_loss(unl, fake)) == pytest.approx(by_hand, rel=1e-6)
    # [0, 0, 0]: Z = 3, D = 3/4; large logits stay finite (logsumexp)
    assert float(unsupervised_loss(torch.full((1, 3), 500.0), torch.full((1, 3), -500.0))) < 1e-6


def test_weight_norm_layer_and_its_data_dependent_init():
    torch.manual_seed(0)
    layer = WNDense(20, 7, relu=False)
    x = torch.randn(256, 20) * 3 + 1
    layer(x, init=True)
    a = layer(x)  # after init the pre-activations on that batch are standardised
    assert torch.allclose(a.mean(0), torch.zeros(7), atol=1e-5)
    assert torch.allclose(a.std(0, unbiased=False), torch.ones(7), atol=1e-4)
    # the weight's column norms are the scale, whatever theta's length
    assert torch.allclose(layer.weight().norm(dim=0), layer.scale)
    assert "scale" not in dict(layer.named_parameters())  # fixed, as the official hidden layers
    m = ImprovedGAN()
    assert "scale" in dict(m.critic.out.named_parameters())  # output layer: train_scale=True
    assert [lay.theta.shape[1] for lay in m.critic.hidden] == [1000, 500, 250, 250, 250]
    logits, feats = m.critic(torch.rand(4, 784))
    assert logits.shape == (4, 10) and feats.shape == (4, 250)
    with torch.no_grad():
        x = m.generator(torch.rand(4, 100))
    assert x.shape == (4, 784) and 0 <= float(x.min()) and float(x.max()) <= 1


def tiny_minibatch_layer(bias=(-1.0, 0.5)) -> MinibatchDiscrimination:
    """A = 2 inputs, B = 2 kernels of C = 2 dims, T set by hand: theta's columns have unit
    norm and the log scale is 0, so T = theta."""
    layer = MinibatchDiscrimination(2, kernels=2, kernel_dim=2)
    with torch.no_grad():
        layer.theta.copy_(
            torch.tensor([[[1.0, 0.0], [0.6, 0.8]], [[0.0, 1.0], [0.8, -0.6]]])
        )  # theta[a, b, c]: kernel 0 is the identity, kernel 1 a rotation-reflection
        layer.log_scale.zero_()
        layer.b.copy_(torch.tensor(bias))
    return layer


def test_minibatch_discrimination_matches_a_hand_computation():
    """f = (1,0), (0,1), (1,1). Kernel 0: M = f, L1 distances d12 = 2, d13 = 1, d23 = 1.
    Kernel 1: M = (0.6, 0.8), (0.8, -0.6), (1.4, 0.2): d12 = 1.6, d13 = 1.4, d23 = 1.4.
    o(x_i)_b = sum over j != i of exp(-d_ij) (as the official layer), plus the bias."""
    layer = tiny_minibatch_layer()
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert torch.allclose(layer.tensor(), layer.theta)
    e = math.exp
    o = torch.tensor(
        [
            [e(-2) + e(-1), e(-1.6) + e(-1.4)],
            [e(-2) + e(-1), e(-1.6) + e(-1.4)],
            [e(-1) + e(-1), e(-1.4) + e(-1.4)],
        ]
    ) + torch.tensor([-1.0, 0.5])
    out = layer(f)
    assert out.shape == (3, 2 + 2)
    assert torch.equal(out[:, :2], f)  # the features pass through, o(x) is concatenated
    assert torch.allclose(out[:, 2:], o, atol=1e-6)
    # the paper's sum over all j (including i, c_b(x_i, x_i) = 1) would be 1 larger
    assert not torch.allclose(out[:, 2:], o + 1, atol=1e-3)
    # a scale on a kernel scales its distances: log scale log 2 on kernel 0 doubles them
    with torch.no_grad():
        layer.log_scale[0].fill_(math.log(2.0))
    assert float(layer(f)[0, 2].detach()) == pytest.approx(e(-4) + e(-2) - 1.0, abs=1e-6)


def test_minibatch_features_depend_on_the_rest_of_the_batch():
    layer = tiny_minibatch_layer(bias=(0.0, 0.0))
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    g = f.clone()
    g[2] = torch.tensor([5.0, -3.0])  # only the third example changes
    assert not torch.allclose(layer(f)[0, 2:], layer(g)[0, 2:])  # the first one's o moves
    # n identical rows: every distance 0, every closeness 1: o = n - 1, the most it can be
    same = torch.tensor([[0.3, -0.7]]).repeat(4, 1)
    assert torch.allclose(layer(same)[:, 2:], torch.full((4, 2), 3.0))
    torch.manual_seed(0)
    mixed = torch.randn(4, 2)
    assert float(layer(mixed)[:, 2:].max()) < 3.0


def test_minibatch_layer_data_dependent_init():
    """Official init: each kernel rescaled so the batch mean of each example's smallest
    distance to another is 2, and the bias set to centre o over the batch."""
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(30, kernels=7, kernel_dim=5)
    f = torch.randn(64, 30) * 4
    init_out = layer(f, init=True)
    out = layer(f)
    assert torch.allclose(out, init_out, atol=1e-5)  # init returns what the new weights give
    assert torch.allclose(out[:, 30:].mean(0), torch.zeros(7), atol=1e-5)
    d = layer.distances(f)
    assert torch.allclose(d.min(2).values.mean(0), torch.full((7,), 2.0), atol=1e-4)
    assert torch.allclose(d[torch.arange(64), :, torch.arange(64)], torch.full((64, 7), 1e6))
    # in the network: after the last hidden layer (with its noise), before the output layer
    m = ImprovedGAN(d_hidden=(16, 8), minibatch_kernels=6)
    assert m.critic.minibatch.theta.shape == (8, 6, 5) and m.critic.out.theta.shape[0] == 8 + 6
    logits, feats = m.critic(torch.rand(5, 784))
    assert logits.shape == (5, 10) and feats.shape == (5, 8)  # features: the hidden layer's
    assert ImprovedGAN().critic.minibatch is None  # off by default


def test_semi_supervised_stream_reads_the_subset_and_whole_passes():
    x = torch.arange(600.0).unsqueeze(1)
    lab = torch.tensor([3, 50, 70, 99, 120, 300, 301, 450, 451, 599])
    s = SemiSupervisedSteps(x, x[lab], lab % 10, batch_size=25, steps=100, seed=1)
    b0 = s.batch(0)
    assert [len(t) for t in b0] == [25, 25, 25, 25]
    # labelled rows come from the subset only, each pass of 10 covering it once
    rows = torch.cat([s.batch(i)[0] for i in range(2)]).flatten()[:50]
    for p in range(5):
        assert sorted(rows[10 * p : 10 * p + 10].long().tolist()) == lab.tolist()
    # the unlabelled streams: one pass of 600 = 24 steps covers every row once; D's and G's differ
    d = torch.cat([s.batch(i)[2] for i in range(24)]).flatten()
    assert sorted(d.long().tolist()) == list(range(600))
    assert not torch.equal(b0[2], b0[3])
    fresh = SemiSupervisedSteps(x, x[lab], lab % 10, batch_size=25, steps=100, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(s.batch(37), fresh.batch(37)))


STEPS = {"featmatch": ["D", "G"], "supervised": ["D"], "minibatch": ["D", "G", "G", "G"]}


@pytest.mark.parametrize("arm", ["featmatch", "supervised", "minibatch"])
def test_only_the_semi_supervised_arms_train_g_and_read_unlabelled_data(arm):
    """One training step with the optimizers recorded: the supervised arm steps D alone and
    its loss ignores the unlabelled batch; feature matching steps D then G; the minibatch
    arm D then G three times, each on other noise."""
    from shortsci_bench.run import build_task

    task = build_task(compose_cfg([*SMOKE, f"arm={arm}"]))
    assert task.semi_supervised == (arm != "supervised")
    assert (task.model.critic.minibatch is not None) == (arm == "minibatch")
    stepped = []
    task.optimizers = lambda: ("D", "G")
    task.step_optimizers = lambda *pairs: stepped.extend((o, float(f())) for o, f in pairs)
    torch.manual_seed(0)
    batch = (torch.rand(20, 784), torch.arange(20) % 10, torch.rand(20, 784), torch.rand(20, 784))
    task.training_step(batch, 0)
    assert [o for o, _ in stepped] == STEPS[arm]
    if arm == "minibatch":  # three G losses on three noise draws (G unchanged here)
        assert len({v for o, v in stepped if o == "G"}) == 3
    z, other = torch.rand(20, 100), torch.rand(20, 784)
    torch.manual_seed(1)  # the same noise in D
    a = task.d_loss(batch[0], batch[1], batch[2], z)[0]
    torch.manual_seed(1)
    b = task.d_loss(batch[0], batch[1], other, z)[0]
    assert (float(a) == float(b)) == (arm == "supervised")


def test_minimax_generator_loss_is_log_one_minus_d():
    """The official minibatch scripts' G loss: E log(1 - D(G(z))), D = Z / (Z + 1)."""
    from shortsci_bench.run import build_task

    task = build_task(compose_cfg([*SMOKE, "arm=minibatch"]))
    assert task.generator_loss == "minimax" and task.g_steps == 3 and task.eval_batch == 100
    torch.manual_seed(0)
    z = torch.rand(6, 100)
    task.model.critic.eval()  # no noise: the same logits twice
    with torch.no_grad():
        logits, _ = task.model.critic(task.model.generator(z))
        loss = task.g_loss(torch.rand(6, 784), z)
    d = logits.exp().sum(1) / (1 + logits.exp().sum(1))
    assert float(loss) == pytest.approx(float(torch.log(1 - d).mean()), rel=1e-5)
    with pytest.raises(Exception, match="set eval_batch"):  # hydra wraps the ValueError
        build_task(compose_cfg([*SMOKE, "arm=minibatch", "task.eval_batch=null"]))


@needs_mnist
@pytest.mark.parametrize("arm", ["featmatch", "supervised", "minibatch"])
def test_smoke_run_records_the_test_errors(tmp_path, arm):
    rec = run_cfg([*SMOKE, f"arm={arm}"], tmp_path)
    assert rec.status == "completed", rec.error
    assert [row["step"] for row in rec.history] == [5.0, 10.0]
    m = rec.metrics
    assert m["test/errors"] == pytest.approx(m["test/error"] * 500)
    assert 0 <= m["test/error_raw"] <= 1
    # G's samples are scored where G is trained
    assert ("quality/inception_score" in m) == (arm != "supervised")
    if arm != "supervised":
        assert 1 <= m["quality/inception_score"] <= 10 and m["quality/fid"] > 0


def test_polyak_average_follows_the_official_update():
    from shortsci_bench.run import build_task

    task = build_task(compose_cfg(SMOKE))
    rate = task.polyak_rate
    p0 = {n: p.detach().clone() for n, p in task.model.critic.named_parameters()}
    task.update_polyak()
    for n, avg in task.averaged_params().items():
        assert torch.allclose(avg, rate * p0[n])  # from zeros: avg + rate (p - avg)
    task.update_polyak()
    for n, avg in task.averaged_params().items():
        assert torch.allclose(avg, rate * p0[n] + rate * (p0[n] - rate * p0[n]))


@needs_mnist
@pytest.mark.slow  # two subprocess runs, about a minute: CI runs it (make test-slow)
def test_a_killed_run_resumes_bit_identically(tmp_path):
    """SIGKILL after step 7 (last checkpoint at step 5), then the same command: the record
    equals an uninterrupted run's, history and metrics (time aside)."""
    args = [*SMOKE, "arm=featmatch"]
    assert_resumes_exactly(args, tmp_path, kill_at=7)
