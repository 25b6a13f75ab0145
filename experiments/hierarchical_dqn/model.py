"""Tabular agents for the stochastic chain of Kulkarni et al., "Hierarchical Deep
Reinforcement Learning: Integrating Temporal Abstraction and Intrinsic Motivation" (NIPS
2016, arXiv 1604.06057), Section 4.1, where the paper runs "the hierarchical method
without neural nets" against flat Q-learning.

- `FlatQLearning`: one-step Q-learning on Q(s, a); the agent sees only the state.
- `HierarchicalQLearning` (h-DQN's Algorithm 1 with tables in place of DQNs and direct
  updates in place of replay): a meta-controller Q2(s, g) picks a goal state g, epsilon-greedy;
  a controller Q1(s, g, a) acts, epsilon-greedy, until it reaches g or the episode ends,
  rewarded intrinsically (1 on reaching g, else 0) by the critic; the meta-controller learns
  from the extrinsic reward F summed over the controller's run (an SMDP update, one
  discount per goal, not per step).

The tables are buffers of an nn.Module so that they travel with the harness's state. Both
agents break ties between equal values at random while learning (so an all-zero table
does not favour action 0) and by the first index when evaluated greedily.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from experiments.hierarchical_dqn.env import StochasticChainEnv, augmented_mdp, policy_value


def epsilon_greedy(q: np.ndarray, eps: float, rng: np.random.Generator) -> int:
    if rng.random() < eps:
        return int(rng.integers(len(q)))
    best = np.flatnonzero(q == q.max())
    return int(best[0] if len(best) == 1 else rng.choice(best))


class FlatQLearning(nn.Module):
    """Q-learning over (state, action): Q(s,a) += lr (r + gamma max_a' Q(s',a') - Q(s,a))."""

    def __init__(self, n_states: int = 6, n_actions: int = 2, lr: float = 0.1, gamma: float = 0.9):
        super().__init__()
        self.lr, self.gamma = float(lr), float(gamma)
        self.register_buffer("q", torch.zeros(n_states, n_actions, dtype=torch.float64))

    def run_episode(self, env: StochasticChainEnv, rng: np.random.Generator, eps: float) -> dict:
        q = self.q.numpy()
        s, _ = env.reset()
        total, steps, terminated = 0.0, 0, False
        while not terminated:
            a = epsilon_greedy(q[s], eps, rng)
            s2, r, terminated, _, info = env.step(a)
            target = r if terminated else r + self.gamma * q[s2].max()
            q[s, a] += self.lr * (target - q[s, a])
            total, steps, s = total + r, steps + 1, s2
        return {"reward": total, "steps": steps, "visited_end": float(info["visited_end"])}

    def greedy_reward(self, env: StochasticChainEnv) -> float:
        """Exact expected episode reward of the greedy policy (no exploration)."""
        p, r, terminal = augmented_mdp(
            env.n_states, env.p_right, env.reward_visited, env.reward_not_visited
        )
        policy = np.tile(self.q.numpy().argmax(1), 2)  # same action whether or not s6 was seen
        return float(policy_value(p, r, terminal, policy)[env.start])


class HierarchicalQLearning(nn.Module):
    """Meta-controller Q2(s, g) over goal states and controller Q1(s, g, a) (tabular h-DQN)."""

    def __init__(
        self,
        n_states: int = 6,
        n_actions: int = 2,
        lr: float = 0.1,
        gamma: float = 0.9,
        meta_gamma: float = 0.9,
    ):
        super().__init__()
        self.lr, self.gamma, self.meta_gamma = float(lr), float(gamma), float(meta_gamma)
        n_goals = n_states  # every state can be a goal
        self.register_buffer("meta_q", torch.zeros(n_states, n_goals, dtype=torch.float64))
        self.register_buffer(
            "controller_q", torch.zeros(n_states, n_goals, n_actions, dtype=torch.float64)
        )

    def run_episode(
        self,
        env: StochasticChainEnv,
        rng: np.random.Generator,
        eps: float,
        controller_eps: float | None = None,
    ) -> dict:
        q2, q1 = self.meta_q.numpy(), self.controller_q.numpy()
        eps1 = eps if controller_eps is None else controller_eps
        s, _ = env.reset()
        total, steps, goals, reached, terminated = 0.0, 0, 0, 0, False
        while not terminated:
            s0, g = s, epsilon_greedy(q2[s], eps, rng)
            extrinsic, goals = 0.0, goals + 1
            while True:
                a = epsilon_greedy(q1[s, g], eps1, rng)
                s2, f, terminated, _, info = env.step(a)
                at_goal = s2 == g
                intrinsic = 1.0 if at_goal else 0.0  # the critic
                done_here = at_goal or terminated
                target = intrinsic if done_here else self.gamma * q1[s2, g].max()
                q1[s, g, a] += self.lr * (target - q1[s, g, a])
                extrinsic, total, steps, s = extrinsic + f, total + f, steps + 1, s2
                if done_here:
                    reached += int(at_goal)
                    break
            target = extrinsic if terminated else extrinsic + self.meta_gamma * q2[s].max()
            q2[s0, g] += self.lr * (target - q2[s0, g])
        return {
            "reward": total,
            "steps": steps,
            "visited_end": float(info["visited_end"]),
            "goals": goals,
            "goals_reached": reached,
        }

    def greedy_reward(self, env: StochasticChainEnv) -> float:
        """Exact expected episode reward of the greedy hierarchy: a Markov chain over
        (state, visited s6, current goal), solved as a linear system."""
        n, n_goals = env.n_states, self.meta_q.shape[1]
        p, r, terminal = augmented_mdp(n, env.p_right, env.reward_visited, env.reward_not_visited)
        q2, q1 = self.meta_q.numpy(), self.controller_q.numpy()
        meta = q2.argmax(1)  # the goal picked in each state
        act = q1.argmax(2)  # (state, goal) -> action
        m = len(p) * n_goals  # y = x * n_goals + g
        p_y, r_y = np.zeros((m, m)), np.zeros(m)
        for x in range(len(p)):
            if terminal[x]:
                continue
            s = x % n
            for g in range(n_goals):
                y, a = x * n_goals + g, act[s, g]
                for x2 in np.flatnonzero(p[x, a]):
                    s2 = x2 % n
                    g2 = meta[s2] if (s2 == g and not terminal[x2]) else g
                    p_y[y, x2 * n_goals + g2] += p[x, a, x2]
                    r_y[y] += p[x, a, x2] * r[x, a, x2]
        values = np.linalg.solve(np.eye(m) - p_y, r_y)
        return float(values[env.start * n_goals + meta[env.start]])
