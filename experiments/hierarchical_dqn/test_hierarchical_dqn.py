"""hdqn_chain: the chain's transition probabilities (by hand and sampled from the Gymnasium
env), its optimal values by value iteration against a closed form and against brute force
over every deterministic policy, the exact evaluation of greedy agents against Monte Carlo,
and smoke runs end to end."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from experiments.hierarchical_dqn.env import (
    LEFT,
    RIGHT,
    StochasticChainEnv,
    augmented_mdp,
    policy_value,
    transition_matrix,
    value_iteration,
)
from experiments.hierarchical_dqn.model import FlatQLearning, HierarchicalQLearning
from shortsci_bench.claims.schema import load_paper
from tests.conftest import REPO, run_cfg


def test_transition_matrix_is_the_papers_chain():
    p = transition_matrix(6, 0.5)
    assert np.allclose(p.sum(-1), 1.0)
    for s in range(1, 6):
        assert p[s, LEFT, s - 1] == 1.0  # left always succeeds
    for s in range(1, 5):  # right: s+1 with probability 0.5, else s-1
        assert p[s, RIGHT, s + 1] == 0.5 and p[s, RIGHT, s - 1] == 0.5
    assert p[5, RIGHT, 4] == 1.0  # ours: right at s6 moves left
    assert p[0, :, 0].tolist() == [1.0, 1.0]  # s1 is terminal


def test_env_samples_the_transition_matrix():
    """Empirical next-state frequencies of env.step within 5 binomial standard errors of P."""
    env = StochasticChainEnv()
    p = transition_matrix()
    n = 4000
    env.reset(seed=123)
    for s in range(1, 6):
        for a in (LEFT, RIGHT):
            counts = np.zeros(6)
            for _ in range(n):
                env.state = s
                s2, *_ = env.step(a)
                counts[s2] += 1
            se = np.sqrt(p[s, a] * (1 - p[s, a]) / n)
            assert np.all(np.abs(counts / n - p[s, a]) <= 5 * se + 1e-12), (s, a, counts)


def test_env_rewards_depend_on_visiting_s6():
    env = StochasticChainEnv(p_right=1.0)  # deterministic: walk to s6 and back
    s, info = env.reset(seed=0)
    assert s == 1 and info["visited_end"] is False
    for expected in (2, 3, 4, 5):
        s, r, term, trunc, info = env.step(RIGHT)
        assert (s, r, term, trunc) == (expected, 0.0, False, False)
    assert info["visited_end"]
    for expected in (4, 3, 2, 1):
        s, r, term, *_ = env.step(LEFT)
        assert (s, r, term) == (expected, 0.0, False)
    s, r, term, *_ = env.step(LEFT)
    assert (s, r, term) == (0, 1.0, True)
    env.reset()
    s, r, term, *_ = env.step(LEFT)
    assert (s, r, term) == (0, 0.01, True)
    with pytest.raises(RuntimeError):
        env.step(LEFT)


def test_value_iteration_matches_the_gamblers_ruin_closed_form():
    """Undiscounted: the best policy presses right until s6 (reached from s2 with the gambler's
    ruin probability (2-1)/(6-1) = 1/5 before falling to s1), then walks left: 0.2 + 0.8 * 0.01."""
    p, r, terminal = augmented_mdp()
    v, greedy = value_iteration(p, r, terminal)
    assert v[1] == pytest.approx(0.2 * 1.0 + 0.8 * 0.01, abs=1e-12)
    assert [int(greedy[s]) for s in range(1, 5)] == [RIGHT] * 4  # s2..s5 before s6: right
    assert v[6 + 1] == pytest.approx(1.0, abs=1e-12)  # s6 already visited: walk home
    # a longer chain: reach s_n from s2 with probability 1/(n-1)
    p8, r8, t8 = augmented_mdp(n_states=8)
    assert value_iteration(p8, r8, t8)[0][1] == pytest.approx(1 / 7 + (6 / 7) * 0.01, abs=1e-12)


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_value_iteration_equals_brute_force_over_all_deterministic_policies(gamma):
    p, r, terminal = augmented_mdp()
    v_star, _ = value_iteration(p, r, terminal, gamma=gamma)
    live = np.flatnonzero(~terminal)
    best = np.full(len(p), -np.inf)
    for actions in itertools.product((LEFT, RIGHT), repeat=len(live)):  # 2^10 policies
        policy = np.zeros(len(p), dtype=int)
        policy[live] = actions
        best = np.maximum(best, policy_value(p, r, terminal, policy, gamma=gamma))
    assert np.allclose(v_star, best, atol=1e-12)


def _monte_carlo(agent, episodes: int, seed: int) -> tuple[float, float]:
    env = StochasticChainEnv()
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    saved = {k: v.clone() for k, v in agent.state_dict().items()}
    agent.lr = 0.0  # evaluate without learning
    rewards = [agent.run_episode(env, rng, eps=0.0)["reward"] for _ in range(episodes)]
    agent.load_state_dict(saved)
    return float(np.mean(rewards)), float(np.std(rewards) / np.sqrt(episodes))


def test_greedy_reward_of_flat_agent_is_exact():
    agent = FlatQLearning()
    assert agent.greedy_reward(StochasticChainEnv()) == pytest.approx(0.01)  # ties: left
    agent.q[1:, RIGHT] = 1.0  # always right: bounces at s6 and comes home with reward 1
    exact = agent.greedy_reward(StochasticChainEnv())
    assert exact == pytest.approx(0.208, abs=1e-12)
    mean, se = _monte_carlo(agent, 20000, seed=1)
    assert abs(mean - exact) < 5 * se


def test_greedy_reward_of_hierarchical_agent_is_exact():
    agent = HierarchicalQLearning()
    agent.meta_q[1:5, 5] = 1.0  # from s2..s5 aim at s6
    agent.meta_q[5, 0] = 1.0  # from s6 aim at s1
    agent.controller_q[:, 5, RIGHT] = 1.0  # towards s6: right
    agent.controller_q[:, 0, LEFT] = 1.0  # towards s1: left
    exact = agent.greedy_reward(StochasticChainEnv())
    assert exact == pytest.approx(0.208, abs=1e-12)  # this hierarchy acts optimally
    mean, se = _monte_carlo(agent, 20000, seed=2)
    assert abs(mean - exact) < 5 * se
    agent.meta_q[1, 0] = 2.0  # from s2 aim at s1 directly: the small reward only
    assert agent.greedy_reward(StochasticChainEnv()) == pytest.approx(0.01, abs=1e-12)


def test_controller_learns_from_intrinsic_reward_only():
    """With an extrinsic reward of 100 the meta-controller's values exceed 1, while the
    controller's stay within [0, 1]: it sees only the critic's reward of 1 per goal."""
    agent = HierarchicalQLearning()
    env = StochasticChainEnv(reward_visited=100.0)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(2000):
        agent.run_episode(env, rng, eps=1.0)
    assert float(agent.meta_q.max()) > 1.0
    assert 0.0 < float(agent.controller_q.max()) <= 1.0
    assert float(agent.controller_q.min()) >= 0.0


@pytest.mark.parametrize("arm", ["hdqn", "qlearning"])
def test_smoke_run(arm, tmp_path: Path):
    record = run_cfg(
        ["+experiment=hdqn_chain", f"arm={arm}", "tier=smoke", "logger=none"], tmp_path / "runs"
    )
    assert record is not None and record.status == "completed", record and record.error
    m = record.metrics
    assert m["reward/optimal"] == pytest.approx(0.208)
    assert 0.0 <= m["reward/greedy"] <= m["reward/optimal"] + 1e-12
    assert 0.01 - 1e-12 <= m["reward/train"] <= 1.0
    assert [row["step"] for row in record.history] == [100.0, 200.0, 300.0]
    paper = load_paper(REPO / "experiments" / "hierarchical_dqn" / "claims.yaml")
    for claim in paper.claims:
        if claim.status == "active" and arm in (getattr(claim, "arm", None),):
            assert claim.metric in m, claim.id


def test_same_seed_same_metrics(tmp_path: Path):
    args = ["+experiment=hdqn_chain", "arm=hdqn", "tier=smoke", "logger=none"]
    a = run_cfg(args, tmp_path / "a").metrics
    b = run_cfg(args, tmp_path / "b").metrics
    assert {k: v for k, v in a.items() if not k.startswith("time/")} == {
        k: v for k, v in b.items() if not k.startswith("time/")
    }
