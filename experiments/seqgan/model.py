"""Groundwork for SeqGAN (Yu, Zhang, Wang & Yu, "SeqGAN: Sequence Generative Adversarial
Nets with Policy Gradient", AAAI 2017, arXiv 1609.05473), synthetic setting: a randomly
initialised "oracle" LSTM defines the true distribution of token sequences, and a model G
is scored by the oracle NLL, -E_{Y ~ G} sum_t log G_oracle(y_t | Y_{1:t-1}).

The language models, the oracle NLL, Monte Carlo rollouts, the CNN discriminator and the
measurement of the rollout estimator's variance (`rollout_variance`) are here; the training
loop is `task.py`.

- `LSTMLanguageModel`: embedding -> one-layer LSTM -> softmax over the vocabulary; sequences
  of fixed length start from a learned start state (no start token is emitted). `sample`,
  `log_prob` (teacher forcing, per sequence), and `rollout` (complete prefixes by sampling,
  for SeqGAN's intermediate rewards).
- `oracle(...)`: an `LSTMLanguageModel` whose parameters are drawn from N(0, 1), as the
  paper initialises its oracle.
- `oracle_nll`: the exact expected oracle NLL of samples from G, estimated by averaging over
  G's samples (each term is exact; only the expectation over G is sampled).
- `CNNDiscriminator`: embeddings, convolutions of several widths with max-over-time pooling,
  a highway layer, dropout, and a logistic output (the paper's discriminator, smaller).
- `rollout_variance`: at fixed G and D, the variance over seeded repeats of the Monte Carlo
  reward estimate (fixed sequences) and of the policy-gradient estimate (a fresh batch each
  repeat) for several numbers of rollouts N: the summary's "They claim this helps to reduce
  variance" made measurable.
"""

from __future__ import annotations

import torch
from torch import nn


class LSTMLanguageModel(nn.Module):
    def __init__(self, vocab: int, embed: int = 32, hidden: int = 32, length: int = 20):
        super().__init__()
        self.vocab, self.length = int(vocab), int(length)
        self.embed = nn.Embedding(vocab, embed)
        self.cell = nn.LSTMCell(embed, hidden)
        self.out = nn.Linear(hidden, vocab)
        self.start = nn.Parameter(torch.zeros(embed))  # input at the first step

    def _init_state(self, n: int):
        h = self.start.new_zeros(n, self.cell.hidden_size)
        return h, h.clone()

    def step_logits(self, inp: torch.Tensor, state):
        h, c = self.cell(inp, state)
        return self.out(h), (h, c)

    def log_prob(self, seqs: torch.Tensor) -> torch.Tensor:
        """log p(y_1..y_T) per sequence (seqs: (n, T) long)."""
        n, t_len = seqs.shape
        state = self._init_state(n)
        inp = self.start.expand(n, -1)
        total = seqs.new_zeros(n, dtype=self.start.dtype)
        for t in range(t_len):
            logits, state = self.step_logits(inp, state)
            total = total + torch.log_softmax(logits, -1).gather(1, seqs[:, t : t + 1]).squeeze(1)
            inp = self.embed(seqs[:, t])
        return total

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.rollout(torch.zeros(n, 0, dtype=torch.long), generator)

    @torch.no_grad()
    def rollout(self, prefix: torch.Tensor, generator: torch.Generator | None = None):
        """Complete each prefix (n, t) to the full length by sampling from the model."""
        n, t0 = prefix.shape
        state = self._init_state(n)
        inp = self.start.expand(n, -1)
        for t in range(t0):
            _, state = self.step_logits(inp, state)
            inp = self.embed(prefix[:, t])
        return self.complete(prefix, state, inp, generator)

    @torch.no_grad()
    def prefix_states(self, seqs: torch.Tensor):
        """(state, next input) after reading each prefix seqs[:, :t], t = 0..T-1: the
        prefix is run once and every rollout starts from its cached state."""
        n, t_len = seqs.shape
        state = self._init_state(n)
        inp = self.start.expand(n, -1)
        out = [(state, inp)]
        for t in range(t_len - 1):
            _, state = self.step_logits(inp, state)
            inp = self.embed(seqs[:, t])
            out.append((state, inp))
        return out

    @torch.no_grad()
    def complete(self, prefix, state, inp, generator: torch.Generator | None = None):
        """Sample the tokens after `prefix` (n, t0) from the state that has read it."""
        out = [prefix[:, t] for t in range(prefix.shape[1])]
        for _ in range(prefix.shape[1], self.length):
            logits, state = self.step_logits(inp, state)
            tok = sample_categorical(logits, generator)
            out.append(tok)
            inp = self.embed(tok)
        return torch.stack(out, 1) if out else prefix


def sample_categorical(logits: torch.Tensor, generator: torch.Generator | None = None):
    """One draw per row from softmax(logits) by inverting the CDF with one uniform per row
    (exact, and much faster on a CPU than torch.multinomial over a large vocabulary)."""
    cdf = torch.softmax(logits, -1).cumsum(-1)
    u = torch.rand(logits.shape[0], 1, generator=generator, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u).squeeze(1).clamp_(max=logits.shape[1] - 1)


def oracle(vocab: int, embed: int, hidden: int, length: int, seed: int) -> LSTMLanguageModel:
    """A random oracle: every parameter drawn from N(0, 1) with a seeded generator."""
    model = LSTMLanguageModel(vocab, embed, hidden, length)
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    model.requires_grad_(False)
    return model


@torch.no_grad()
def oracle_nll(oracle_model: LSTMLanguageModel, samples: torch.Tensor) -> float:
    """Mean over samples of -log p_oracle(sample), per sequence (the paper's NLL_oracle)."""
    return float(-oracle_model.log_prob(samples).mean())


class CNNDiscriminator(nn.Module):
    """P(real | sequence): convolutions of several widths, max over time, highway, dropout."""

    def __init__(
        self,
        vocab: int,
        embed: int = 32,
        widths: tuple[int, ...] = (2, 3, 4, 5),
        filters: int = 16,
        dropout: float = 0.25,
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.convs = nn.ModuleList(nn.Conv1d(embed, filters, w) for w in widths)
        d = filters * len(widths)
        self.highway_h, self.highway_t = nn.Linear(d, d), nn.Linear(d, d)
        self.drop, self.out = nn.Dropout(dropout), nn.Linear(d, 1)

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        """Logits of 'real', (n,)."""
        e = self.embed(seqs).transpose(1, 2)  # (n, embed, T)
        f = torch.cat([torch.relu(c(e)).amax(-1) for c in self.convs], -1)
        t = torch.sigmoid(self.highway_t(f))
        f = t * torch.relu(self.highway_h(f)) + (1 - t) * f
        return self.out(self.drop(f)).squeeze(-1)


@torch.no_grad()
def mc_rewards(
    gen: LSTMLanguageModel,
    disc: CNNDiscriminator,
    seqs: torch.Tensor,
    n_rollouts: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SeqGAN's action values Q(Y_{1:t-1}, y_t), (n, T): for t < T the mean of D(real) over
    `n_rollouts` completions of the prefix Y_{1:t} sampled from G; for t = T, D(Y)."""
    n, t_len = seqs.shape
    was_training = disc.training
    disc.eval()
    q = torch.zeros(n, t_len)
    states = gen.prefix_states(seqs)
    for t in range(1, t_len):
        (h, c), inp = states[t]
        rep = (h.repeat(n_rollouts, 1), c.repeat(n_rollouts, 1))
        full = gen.complete(
            seqs[:, :t].repeat(n_rollouts, 1), rep, inp.repeat(n_rollouts, 1), generator
        )
        q[:, t - 1] = torch.sigmoid(disc(full)).view(n_rollouts, n).mean(0)
    q[:, -1] = torch.sigmoid(disc(seqs))
    disc.train(was_training)
    return q


def policy_gradient_loss(gen: LSTMLanguageModel, seqs: torch.Tensor, q: torch.Tensor):
    """-mean over sequences of sum_t log G(y_t | Y_{1:t-1}) Q_t (REINFORCE, no baseline, as
    in the paper)."""
    n, t_len = seqs.shape
    state = gen._init_state(n)
    inp = gen.start.expand(n, -1)
    total = torch.zeros(n)
    for t in range(t_len):
        logits, state = gen.step_logits(inp, state)
        logp = torch.log_softmax(logits, -1).gather(1, seqs[:, t : t + 1]).squeeze(1)
        total = total + logp * q[:, t]
        inp = gen.embed(seqs[:, t])
    return -total.mean()


class SeqGANModels(nn.Module):
    """The oracle (fixed, seeded), the generator G and the discriminator D of one run."""

    def __init__(
        self,
        vocab: int = 5000,
        length: int = 20,
        embed: int = 32,
        hidden: int = 32,
        oracle_seed: int = 0,
        d_embed: int = 64,
        d_filters: int = 16,
        d_dropout: float = 0.25,
    ):
        super().__init__()
        self.oracle = oracle(vocab, embed, hidden, length, oracle_seed)
        self.generator = LSTMLanguageModel(vocab, embed, hidden, length)
        self.discriminator = CNNDiscriminator(
            vocab, d_embed, widths=(2, 3, 4, 5), filters=d_filters, dropout=d_dropout
        )


def _flat_grad(gen: LSTMLanguageModel, loss: torch.Tensor) -> torch.Tensor:
    params = [p for p in gen.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)]
    )


def rollout_variance(
    gen: LSTMLanguageModel,
    disc: CNNDiscriminator,
    n_values: tuple[int, ...],
    repeats: int,
    n_seqs: int,
    batch: int,
    generator: torch.Generator,
) -> dict[str, float]:
    """The variance of SeqGAN's Monte Carlo estimates at fixed G and D, for each N in
    `n_values` (`repeats` independent estimates each, all from one seeded generator):

    - `var/reward_N{N}`: the variance over repeats of Q_t estimated with N rollouts, for
      `n_seqs` fixed sequences sampled once, averaged over sequences and t < T (the last
      step's reward is D(Y), not estimated). For iid rollouts it is Var_1 / N exactly.
    - `var/pg_N{N}`: the variance over repeats of the policy-gradient estimate (the gradient
      of `policy_gradient_loss` for a fresh batch of `batch` sequences from G each repeat),
      summed over G's parameters (the trace of its covariance). Sequence sampling adds
      variance that N does not touch, so the ratio to N = 1 lies between 1/N and 1.
    - `var/reward_ratio_{N}_{first}`, `var/pg_ratio_{N}_{first}`: each against the first N.
    """
    out: dict[str, float] = {}
    fixed = gen.sample(n_seqs, generator=generator)
    for n_roll in n_values:
        q = torch.stack(
            [mc_rewards(gen, disc, fixed, n_roll, generator)[:, :-1] for _ in range(repeats)]
        )
        out[f"var/reward_N{n_roll}"] = float(q.double().var(0, unbiased=True).mean())
        grads = []
        for _ in range(repeats):
            seqs = gen.sample(batch, generator=generator)
            rewards = mc_rewards(gen, disc, seqs, n_roll, generator)
            grads.append(_flat_grad(gen, policy_gradient_loss(gen, seqs, rewards)).double())
        out[f"var/pg_N{n_roll}"] = float(torch.stack(grads).var(0, unbiased=True).sum())
    first = n_values[0]
    for n_roll in n_values[1:]:
        for kind in ("reward", "pg"):
            ratio = out[f"var/{kind}_N{n_roll}"] / out[f"var/{kind}_N{first}"]
            out[f"var/{kind}_ratio_{n_roll}_{first}"] = ratio
    return out
