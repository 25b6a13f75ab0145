"""Few-shot training and pinned-episode evaluation for Matching Networks and their baselines.

Vinyals et al., NIPS 2016, section 4.1 and Table 1. What a step trains (`objective`):
- `episodes`: the matching loss, -log P(y_hat | x_hat, S), on episodes drawn like the test
  episodes ("test and train conditions must match");
- `classifier`: the same conv net with a linear softmax head over all training classes
  (the "Baseline Classifier" row); the head is dropped at test time;
- `null`: nothing to train (cosine 1-NN on pixels): the run only evaluates.
How a test query is labelled (`rule`): `attention` (eq. 1) or `nearest_neighbour` (cosine 1-NN).

Evaluation embeds every test drawing once (the embedding is per drawing: batch norm is in
inference mode), then scores all pinned episodes by indexing those embeddings. It records
`test/acc_<way>w<shot>s` (mean over episodes) and `test/acc_<...>_ci95` (half-width of the
normal 95% interval over episodes).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from experiments.matching_networks.model import MatchingNetwork
from shortsci_bench.data.episodes import gather, mean_ci95, parse_setting, support_query, to_float
from shortsci_bench.tasks.base import HarnessTask


class MatchingTask(HarnessTask):
    def __init__(
        self,
        model: MatchingNetwork,
        optimizer,
        scheduler=None,
        objective: str | None = "episodes",
        rule: str = "attention",
        embed_chunk: int = 512,
        episode_chunk: int = 250,
        mean_over_history: tuple[str, ...] = (),
    ):
        super().__init__(optimizer, scheduler, mean_over_history)
        if objective not in ("episodes", "classifier", None):
            raise ValueError(f"objective {objective!r}: use episodes, classifier or null")
        if rule not in ("attention", "nearest_neighbour"):
            raise ValueError(f"rule {rule!r}: use attention or nearest_neighbour")
        self.model = model
        self.objective, self.rule = objective, rule
        self.fit_free = objective is None
        self.embed_chunk, self.episode_chunk = embed_chunk, episode_chunk
        self.head: nn.Linear | None = None
        self._eval: dict[str, float] = {}
        self._examples_per_step = 0  # episodes (or drawings) per update, for throughput
        self._eval_episodes_per_s = float("nan")

    def setup(self, stage: str) -> None:
        # The baseline's softmax head spans the datamodule's training classes (rotations
        # included); made here, before the optimizer and any checkpoint restore.
        if self.objective == "classifier" and self.head is None:
            self.head = nn.Linear(self.model.dim, self.trainer.datamodule.n_train_classes)

    # --- training -----------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        if self.objective == "classifier":
            x, y = batch
            self._examples_per_step = len(x)
            logits = self.head(self.model.embed(to_float(x.squeeze(1))))
            return self.check_finite(F.cross_entropy(logits, y))
        way = int(batch["way"])
        log_p = self.model(batch["support"], batch["support_labels"], batch["query"], way)
        self._examples_per_step = len(log_p)
        loss = F.nll_loss(log_p.reshape(-1, way), batch["query_labels"].reshape(-1))
        return self.check_finite(loss)

    # --- evaluation on the pinned episodes ------------------------------------------------
    @torch.no_grad()
    def embed_all(self, images: torch.Tensor) -> torch.Tensor:
        """Embeddings of every test drawing: uint8 [C, 20, H, W] -> [C, 20, D]."""
        flat = images.reshape(-1, *images.shape[-2:])
        parts = [
            self.model.embed(to_float(flat[i : i + self.embed_chunk]))
            for i in range(0, len(flat), self.embed_chunk)
        ]
        z = torch.cat(parts)
        return z.reshape(*images.shape[:2], z.shape[-1])

    @torch.no_grad()
    def episode_accuracy(
        self, z: torch.Tensor, index: dict[str, torch.Tensor], way: int, shot: int
    ) -> torch.Tensor:
        """Per-episode accuracy on pinned episodes, from per-drawing embeddings z [C, 20, D]."""
        accs = []
        n = len(index["classes"])
        for i in range(0, n, self.episode_chunk):
            chunk = {k: v[i : i + self.episode_chunk] for k, v in index.items()}
            ep = support_query(gather(z, chunk), shot)
            if self.rule == "attention":
                pred = self.model.log_probs(
                    ep["support"], ep["support_labels"], ep["query"], way
                ).argmax(-1)
            else:
                pred = self.model.nearest_neighbour(
                    ep["support"], ep["support_labels"], ep["query"]
                )
            accs.append((pred == ep["query_labels"]).float().mean(-1))
        return torch.cat(accs)

    def validation_step(self, batch, batch_idx):
        t0 = time.perf_counter()
        z = self.embed_all(batch["images"])
        metrics, n_episodes = {}, 0
        for name, index in batch["episodes"].items():
            way, shot = parse_setting(name)
            acc = self.episode_accuracy(z, index, way, shot)
            mean, half = mean_ci95(acc)
            metrics[f"test/acc_{name}"] = mean
            metrics[f"test/acc_{name}_ci95"] = half
            n_episodes += len(acc)
        seconds = time.perf_counter() - t0
        metrics["time/eval_s"] = seconds
        self._eval_episodes_per_s = n_episodes / seconds
        self._eval = metrics

    def on_validation_epoch_end(self) -> None:
        self.record_eval(self._eval)

    def final_metrics(self) -> dict[str, float]:
        out = super().final_metrics()
        if self._eval_episodes_per_s == self._eval_episodes_per_s:  # not NaN: an evaluation ran
            out["time/eval_episodes_per_s"] = self._eval_episodes_per_s
        step_s = out.get("time/step_s")
        if step_s and self._examples_per_step:
            unit = "images" if self.objective == "classifier" else "episodes"
            out[f"time/{unit}_per_s"] = self._examples_per_step / step_s
        return out
