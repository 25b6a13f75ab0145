"""Training the chain agents: an evaluate-only task that plays all episodes itself.

Episodes are not minibatches, so the task is `fit_free` (as `deep_linear`): its one
validation pass runs the whole training loop. Exploration follows the paper's outline
(epsilon-greedy, annealed from 1.0 to 0.1; the schedule's length is ours). Every
`eval_every` episodes a history row records the mean extrinsic reward per episode of the
window (with exploration: the quantity the paper plots), the fraction of episodes that
visited s6, and the exact expected reward of the current greedy policy.
"""

from __future__ import annotations

import time

import numpy as np

from experiments.hierarchical_dqn.model import FlatQLearning, HierarchicalQLearning
from shortsci_bench.tasks.base import HarnessTask


def linear_epsilon(episode: int, start: float, end: float, anneal_episodes: int) -> float:
    """start -> end linearly over `anneal_episodes`, then end."""
    if anneal_episodes <= 0:
        return end
    frac = min(1.0, episode / anneal_episodes)
    return start + (end - start) * frac


class ChainRLTask(HarnessTask):
    fit_free = True  # run.py calls trainer.validate: the loop below is the training

    def __init__(
        self,
        model: FlatQLearning | HierarchicalQLearning,
        seed: int = 0,
        episodes: int = 12_000,
        eval_every: int = 1_000,
        eps_start: float = 1.0,
        eps_end: float = 0.1,
        anneal_episodes: int = 6_000,
        controller_anneal_episodes: int | None = None,
        optimizer=None,
        scheduler=None,
        mean_over_history: tuple[str, ...] = (),
    ):
        super().__init__(optimizer, scheduler, mean_over_history)
        self.model = model
        self.seed = int(seed)
        self.episodes, self.eval_every = int(episodes), int(eval_every)
        self.eps_start, self.eps_end = float(eps_start), float(eps_end)
        self.anneal_episodes = int(anneal_episodes)
        self.controller_anneal_episodes = (
            None if controller_anneal_episodes is None else int(controller_anneal_episodes)
        )

    def configure_optimizers(self):
        return None  # tabular updates, written out in the agents

    def validation_step(self, batch, batch_idx):
        datamodule = self.trainer.datamodule
        env = datamodule.make_env()
        env.reset(seed=self.seed)  # seeds the environment's own generator once
        rng = np.random.default_rng(self.seed)  # the agent's exploration
        hierarchical = isinstance(self.model, HierarchicalQLearning)
        window: list[dict] = []
        t0 = time.perf_counter()
        for episode in range(self.episodes):
            eps = linear_epsilon(episode, self.eps_start, self.eps_end, self.anneal_episodes)
            if hierarchical and self.controller_anneal_episodes is not None:
                eps1 = linear_epsilon(
                    episode, self.eps_start, self.eps_end, self.controller_anneal_episodes
                )
                window.append(self.model.run_episode(env, rng, eps, eps1))
            else:
                window.append(self.model.run_episode(env, rng, eps))
            self._train_steps += 1
            if (episode + 1) % self.eval_every == 0 or episode + 1 == self.episodes:
                self._train_seconds = time.perf_counter() - t0
                self.record_window(episode + 1, eps, window, env)
                window = []
        self._train_seconds = time.perf_counter() - t0
        self.final_extra["reward/optimal"] = datamodule.optimal_reward()
        self.final_extra["reward/greedy_over_optimal"] = (
            self.history[-1]["reward/greedy"] / self.final_extra["reward/optimal"]
        )

    def record_window(self, episode: int, eps: float, window: list[dict], env) -> None:
        row = {
            "step": float(episode),
            "epsilon": eps,
            "reward/train": float(np.mean([w["reward"] for w in window])),
            "visits/end_fraction": float(np.mean([w["visited_end"] for w in window])),
            "episode/steps": float(np.mean([w["steps"] for w in window])),
            "reward/greedy": self.model.greedy_reward(env),
        }
        if "goals" in window[0]:
            goals = sum(w["goals"] for w in window)
            row["goals/reached_fraction"] = sum(w["goals_reached"] for w in window) / goals
        self.history.append(row)
        for logger in self.loggers:
            logger.log_metrics({k: v for k, v in row.items() if k != "step"}, step=episode)
