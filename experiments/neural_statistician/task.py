"""Training the neural statistician on sets of Omniglot drawings, scored on the pinned
few-shot test episodes of `matchingnet_omniglot` (Edwards & Storkey, ICLR 2017, section 5.4).

A step: the shared Omniglot datamodule's training "episode" of `way` classes x `shot`
drawings is read as `way` datasets of `shot` drawings of one character each (queries 0); the
loss is minus the variational lower bound, per drawing.

Evaluation is `MatchingTask`'s (imported, not copied): every test drawing is embedded once
(`NeuralStatistician.embed`, the statistic network's per-example features: batch norm in
inference mode), then every pinned episode is scored by indexing those features. Only the
rule differs (`episode_accuracy`):
- `kl`: the support drawings of class k are pooled into q(c|D_k), each query alone gives
  q(c|x'), and the query goes to the class with the smallest KL(q(c|x') || q(c|D_k));
- `pixels_nn`: nothing trained; Euclidean 1-nearest neighbour on raw pixels (the summary's
  "1nearest neighbor classifier based on the raw input").
Metrics: `test/acc_<way>w<shot>s` and `_ci95`, as in `matchingnet_omniglot`; and
`test/nll_bound`, minus the lower bound on `bound_sets` held-out sets of 5 test drawings
(the objective, on characters never trained on).
"""

from __future__ import annotations

import torch

from experiments.matching_networks.task import MatchingTask
from experiments.neural_statistician.model import NeuralStatistician, kl_classify
from shortsci_bench.data.episodes import gather, support_query, to_float


class StatisticianTask(MatchingTask):
    def __init__(
        self,
        model: NeuralStatistician,
        optimizer,
        scheduler=None,
        rule: str = "kl",
        embed_chunk: int = 512,
        episode_chunk: int = 250,
        mean_over_history: tuple[str, ...] = (),
        bound_sets: int = 0,
    ):
        if rule not in ("kl", "pixels_nn"):
            raise ValueError(f"rule {rule!r}: use kl or pixels_nn")
        super().__init__(
            model, optimizer, scheduler, objective="episodes", rule="attention",
            embed_chunk=embed_chunk, episode_chunk=episode_chunk,
            mean_over_history=mean_over_history,
        )  # fmt: skip
        self.rule = rule
        self.bound_sets = bound_sets
        self.fit_free = rule == "pixels_nn"  # the harness then evaluates only

    def training_step(self, batch, batch_idx):
        way = int(batch["way"])
        sets = batch["support"].reshape(way, -1, *batch["support"].shape[-3:])
        out = self.model(sets)
        self._examples_per_step = way  # datasets per update
        return self.check_finite(out["loss"])

    def validation_step(self, batch, batch_idx):
        # Which test drawings the pinned episodes use: only those are embedded (all of them at
        # 1,000 episodes a setting; a fraction when a check shrinks the evaluation, which
        # matters with the paper tier's encoder on a CPU). Per-drawing features do not depend
        # on which others are embedded (batch norm is in inference mode).
        used = torch.zeros(batch["images"].shape[:2], dtype=torch.bool)
        for index in batch["episodes"].values():
            used[index["classes"][..., None].cpu(), index["drawers"].cpu()] = True
        self._used = used.to(batch["images"].device)
        super().validation_step(batch, batch_idx)
        if self.rule == "kl" and self.bound_sets:
            self._eval["test/nll_bound"] = self.test_bound(batch["images"])

    @torch.no_grad()
    def test_bound(self, images: torch.Tensor) -> float:
        """Minus the lower bound (nats per drawing) on held-out sets: the first `bound_sets`
        test characters, drawers 1-5 each. The noise is drawn from a fixed seed, outside the
        run's random stream, so every evaluation scores the same draws."""
        sets = to_float(images[: self.bound_sets, :5])  # [S, 5, 1, H, W]
        with torch.random.fork_rng(devices=[images.device] if images.is_cuda else []):
            torch.manual_seed(0)
            losses = [
                self.model(sets[i : i + 64])["loss"] * len(sets[i : i + 64])
                for i in range(0, len(sets), 64)
            ]
        return float(sum(losses) / len(sets))

    @torch.no_grad()
    def embed_all(self, images: torch.Tensor) -> torch.Tensor:
        """Features of the drawings the episodes use, [C, 20, D] (zeros elsewhere, never read)."""
        if self.rule == "pixels_nn":
            return images.reshape(*images.shape[:2], -1).float().div(255.0)
        used = getattr(self, "_used", None)
        if used is None:
            return super().embed_all(images)
        picked = images[used]  # [n, H, W]
        parts = [
            self.model.embed(to_float(picked[i : i + self.embed_chunk]))
            for i in range(0, len(picked), self.embed_chunk)
        ]
        feats = torch.cat(parts)
        z = feats.new_zeros(*images.shape[:2], feats.shape[-1])
        z[used] = feats
        return z

    @torch.no_grad()
    def episode_accuracy(
        self, z: torch.Tensor, index: dict[str, torch.Tensor], way: int, shot: int
    ) -> torch.Tensor:
        """Per-episode accuracy on the pinned episodes from per-drawing features z [C, 20, D]."""
        accs = []
        for i in range(0, len(index["classes"]), self.episode_chunk):
            chunk = {k: v[i : i + self.episode_chunk] for k, v in index.items()}
            ep = support_query(gather(z, chunk), shot)
            support = ep["support"].reshape(len(ep["support"]), way, shot, -1)  # class-major
            if self.rule == "kl":
                c_mean, c_logvar = self.model.context(support)  # q(c | D_k): [E, way, C]
                q_mean, q_logvar = self.model.context(ep["query"][:, :, None])  # q(c | x')
                pred = kl_classify(q_mean, q_logvar, c_mean, c_logvar)
            else:
                d = torch.cdist(ep["query"], ep["support"])  # [E, Q, way * shot]
                pred = ep["support_labels"].gather(1, d.argmin(-1))
            accs.append((pred == ep["query_labels"]).float().mean(-1))
        return torch.cat(accs)

    def final_metrics(self) -> dict[str, float]:
        out = super().final_metrics()
        # MatchingTask names the unit "episodes"; here one training example is a dataset
        if "time/episodes_per_s" in out:
            out["time/datasets_per_s"] = out.pop("time/episodes_per_s")
        return out
