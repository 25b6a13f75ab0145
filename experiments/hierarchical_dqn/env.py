"""The stochastic decision process of Kulkarni et al., "Hierarchical Deep Reinforcement
Learning: Integrating Temporal Abstraction and Intrinsic Motivation" (NIPS 2016, arXiv
1604.06057), Section 4.1, as a Gymnasium environment, with its exact transition matrix and
value iteration.

The paper's rules: six states s1..s6 in a chain, the agent starts at s2; "left" always
moves one state left; "right" moves one state right with probability 0.5, else one state
left; s1 is terminal; the reward on reaching s1 is 1 if s6 was visited in the episode,
else 0.01 (and 0 on every other step). The reward depends on the history, so the
environment is an MDP only over (state, visited s6). Ours: "right" at s6 (where there is
no state to its right) moves left, as a failed "right" does everywhere else.

States are numbered 0..5 here (s1 = 0, s6 = 5); actions: 0 = left, 1 = right.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

LEFT, RIGHT = 0, 1


class StochasticChainEnv(gym.Env):
    """Observation: the current state (Discrete(n_states)); the flag "s6 visited" is in
    `info["visited_end"]` but not in the observation, as in the paper, where the agent sees
    only the state."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        n_states: int = 6,
        start: int = 1,
        p_right: float = 0.5,
        reward_visited: float = 1.0,
        reward_not_visited: float = 0.01,
    ):
        if n_states < 3 or not 0 < start < n_states - 1:
            raise ValueError(
                f"need n_states >= 3 and 0 < start < n_states - 1, got {n_states}, {start}"
            )
        self.n_states, self.start, self.p_right = int(n_states), int(start), float(p_right)
        self.reward_visited, self.reward_not_visited = (
            float(reward_visited),
            float(reward_not_visited),
        )
        self.observation_space = spaces.Discrete(self.n_states)
        self.action_space = spaces.Discrete(2)
        self.state, self.visited_end = self.start, False

    @property
    def end(self) -> int:
        return self.n_states - 1

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.state, self.visited_end = self.start, False
        return self.state, {"visited_end": False}

    def step(self, action: int):
        if self.state == 0:
            raise RuntimeError("step() after the episode ended: call reset()")
        moves_right = (
            int(action) == RIGHT
            and self.state < self.end
            and self.np_random.random() < self.p_right
        )
        self.state += 1 if moves_right else -1
        self.visited_end |= self.state == self.end
        terminated = self.state == 0
        reward = 0.0
        if terminated:
            reward = self.reward_visited if self.visited_end else self.reward_not_visited
        return self.state, reward, terminated, False, {"visited_end": self.visited_end}


def transition_matrix(n_states: int = 6, p_right: float = 0.5) -> np.ndarray:
    """P[s, a, s']: the chain's transition probabilities (row 0, terminal, stays put)."""
    p = np.zeros((n_states, 2, n_states))
    p[0, :, 0] = 1.0
    for s in range(1, n_states):
        p[s, LEFT, s - 1] = 1.0
        if s < n_states - 1:
            p[s, RIGHT, s + 1] = p_right
            p[s, RIGHT, s - 1] = 1.0 - p_right
        else:
            p[s, RIGHT, s - 1] = 1.0
    return p


def augmented_mdp(
    n_states: int = 6,
    p_right: float = 0.5,
    reward_visited: float = 1.0,
    reward_not_visited: float = 0.01,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Markov version over x = (state, visited) -> index state + n_states * visited.

    Returns (P[x, a, x'], R[x, a, x'], terminal[x]): R is the expected reward of the
    transition (non-zero only on reaching s1); terminal states have no outgoing reward.
    """
    base = transition_matrix(n_states, p_right)
    n = 2 * n_states
    p, r = np.zeros((n, 2, n)), np.zeros((n, 2, n))
    terminal = np.zeros(n, dtype=bool)
    for visited in (0, 1):
        for s in range(n_states):
            x = s + n_states * visited
            if s == 0:
                terminal[x] = True
                p[x, :, x] = 1.0
                continue
            for a in (LEFT, RIGHT):
                for s2 in np.flatnonzero(base[s, a]):
                    v2 = int(visited or s2 == n_states - 1)
                    x2 = s2 + n_states * v2
                    p[x, a, x2] += base[s, a, s2]
                    if s2 == 0:
                        r[x, a, x2] = reward_visited if v2 else reward_not_visited
    return p, r, terminal


def value_iteration(
    p: np.ndarray, r: np.ndarray, terminal: np.ndarray, gamma: float = 1.0, tol: float = 1e-13
) -> tuple[np.ndarray, np.ndarray]:
    """Optimal values V*(x) and greedy actions by value iteration (gamma = 1 is fine here:
    every policy ends the episode with probability 1, since a left move always has
    probability >= 1 - p_right)."""
    v = np.zeros(len(p))
    for _ in range(1_000_000):
        q = (p * (r + gamma * v[None, None, :])).sum(-1)
        q[terminal] = 0.0
        v_new = q.max(1)
        if np.abs(v_new - v).max() < tol:
            return v_new, q.argmax(1)
        v = v_new
    raise RuntimeError("value iteration did not converge")


def policy_value(
    p: np.ndarray, r: np.ndarray, terminal: np.ndarray, policy: np.ndarray, gamma: float = 1.0
) -> np.ndarray:
    """Exact value of a deterministic policy over the augmented states, by a linear solve."""
    n = len(p)
    idx = np.arange(n)
    p_pi, r_pi = p[idx, policy], (p[idx, policy] * r[idx, policy]).sum(-1)
    p_pi[terminal], r_pi[terminal] = 0.0, 0.0
    return np.linalg.solve(np.eye(n) - gamma * p_pi, r_pi)
