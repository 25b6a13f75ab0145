"""The chain environment as a datamodule: the harness hands the task one placeholder
batch (the task is evaluate-only and plays its own episodes), and the datamodule builds
the environment with the settings of `conf/dataset/stochastic_chain.yaml`."""

from __future__ import annotations

import lightning as L
import torch

from experiments.hierarchical_dqn.env import StochasticChainEnv, augmented_mdp, value_iteration


class StochasticChainDataModule(L.LightningDataModule):
    name = "stochastic_chain"

    def __init__(
        self,
        n_states: int = 6,
        start: int = 1,
        p_right: float = 0.5,
        reward_visited: float = 1.0,
        reward_not_visited: float = 0.01,
    ):
        super().__init__()
        self.settings = {
            "n_states": int(n_states),
            "start": int(start),
            "p_right": float(p_right),
            "reward_visited": float(reward_visited),
            "reward_not_visited": float(reward_not_visited),
        }

    def make_env(self) -> StochasticChainEnv:
        return StochasticChainEnv(**self.settings)

    def optimal_reward(self) -> float:
        """The best expected episode reward any agent can get (value iteration, gamma 1,
        over the Markov states (state, visited s6))."""
        s = self.settings
        p, r, terminal = augmented_mdp(
            s["n_states"], s["p_right"], s["reward_visited"], s["reward_not_visited"]
        )
        return float(value_iteration(p, r, terminal)[0][s["start"]])

    def val_dataloader(self):
        return [(torch.zeros(1),)]  # one placeholder batch: the task's loop is the run

    def provenance(self) -> dict:
        return {
            "dataset": "stochastic_chain",
            "source": "experiments.hierarchical_dqn.env.StochasticChainEnv (gymnasium.Env)",
            **self.settings,
        }
