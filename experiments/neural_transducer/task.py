"""Training and scoring sequence transducers: the Neural Transducer, CTC, encoder-decoder.

Jaitly et al., "A Neural Transducer" (NIPS 2016), sections 3.5, 3.6 and 4:

- the transducer trains on a fixed approximate best alignment per sequence, found by the
  search of section 3.5 with a copy of the parameters refreshed every `align_every`
  sequences ("alignments are computed less frequently than the model updates - typically
  every 100-300 sequences"; TIMIT: "a model that was updated after every 300 steps").
  `align_warmup` sequences may first be trained on random alignments (each target symbol
  in a uniformly random block), a flat start: on the addition task the search, started
  from an untrained model, locks at once onto emitting every digit in the first block,
  before the digits it needs are read (a fixed point of training on best alignments: the
  model then never learns that later blocks predict better). The paper reports no such
  step; we state it where we use it;
- `alignment: given` uses the data's own segmentation instead (TIMIT's .PHN end times,
  each phone in the block it was last heard in, as the paper did with Kaldi's alignments);
- evaluation decodes by beam search (section 3.6) and scores by edit distance after folding
  to the scoring classes (TIMIT: 39 phones): `<split>/per` (or the name the config gives),
  and `<split>/err`, the fraction of sequences with any error;
- TIMIT's schedule: the learning rate halves whenever the validation log probability falls,
  at most 4 times (`lr_halving`), and the parameters with the best validation log
  probability are the ones tested (`select_best`);
- RAML (`raml: {tau: ...}`, see `raml.py`) replaces each training target with a sample
  from the exponentiated payoff distribution around it.

History rows carry `val/*`; `test/*` is scored once, at the end, on the test set.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from experiments.neural_transducer.search import counts_from_blocks
from experiments.raml.payoff import PayoffSampler
from shortsci_bench.data.batches import seeded_generator
from shortsci_bench.data.sequences import pad_sequences
from shortsci_bench.tasks.base import HarnessTask
from shortsci_bench.tasks.sequence_metrics import error_counts, fold


def _targets(batch: Mapping[str, torch.Tensor]) -> list[list[int]]:
    return [row[:n].tolist() for row, n in zip(batch["y"], batch["y_len"].tolist())]


class TransductionTask(HarnessTask):
    def __init__(
        self,
        model: nn.Module,
        optimizer,
        scheduler=None,
        mean_over_history: Sequence[str] = (),
        alignment: str = "search",
        align_every: int = 300,
        align_warmup: int = 0,
        align_sampling: bool = False,
        raml: Mapping[str, Any] | None = None,
        token_error_metric: str = "per",
        lr_halving: Mapping[str, Any] | None = None,
        select_best: bool = False,
        stop_at: Mapping[str, Any] | None = None,
        eval_beam: int | None = None,
        seed: int = 0,
    ):
        super().__init__(optimizer, scheduler, mean_over_history)
        if alignment not in ("search", "given"):
            raise ValueError(f"alignment must be search or given, not {alignment!r}")
        self.model = model
        self.alignment, self.align_every = alignment, int(align_every)
        self.align_warmup = int(align_warmup)
        self.align_sampling = bool(align_sampling)
        self.raml = dict(raml) if raml else None
        self.token_error_metric = token_error_metric
        self.lr_halving = dict(lr_halving) if lr_halving else None
        self.select_best, self.stop_at = select_best, dict(stop_at) if stop_at else None
        self.eval_beam, self.seed = eval_beam, int(seed)
        self.sampler: PayoffSampler | None = None
        # the alignment model: a copy of the parameters, refreshed every `align_every`
        # sequences; kept in a list so it is not registered as a submodule (not trained)
        self._align_model: list[nn.Module] = []
        self._align_version = -1
        self._halvings = 0
        self._prev_val_logprob: float | None = None
        self._best: dict[str, Any] | None = None
        self._val: dict[str, Any] = {}

    # --- training -----------------------------------------------------------------------
    def _sampler(self) -> PayoffSampler:
        if self.sampler is None:
            cfg = dict(self.raml)
            self.sampler = PayoffSampler(self.model.n_classes, **cfg)
        return self.sampler

    def _alignment_model(self, batch_size: int) -> nn.Module:
        """The parameters alignments are computed with: those of the last refresh."""
        refresh = max(1, round(self.align_every / batch_size))
        if refresh == 1:
            return self.model
        version = (self.global_step // refresh) * refresh
        if not self._align_model:
            self._align_model.append(copy.deepcopy(self.model).requires_grad_(False))
            self._align_version = -1
        aligner = self._align_model[0]
        if next(aligner.parameters()).device != self.device:  # e.g. restored before the move
            aligner.to(self.device)
        if self._align_version != version:
            aligner.load_state_dict(self.model.state_dict())
            self._align_version = version
        return aligner

    def _counts(self, batch, memory, targets: list[list[int]]) -> list[list[int]]:
        model = self.model
        n_blocks = memory.n_blocks.tolist()
        if model.block_size is None:
            return [[len(t)] for t in targets]
        if self.alignment == "given":
            ends = [row[:n].tolist() for row, n in zip(batch["y_end"], batch["y_len"].tolist())]
            return [counts_from_blocks([e // model.block_size for e in end], n)
                    for end, n in zip(ends, n_blocks)]  # fmt: skip
        if self.global_step * len(targets) < self.align_warmup:
            return self._random_counts(targets, n_blocks)
        aligner = self._alignment_model(len(targets))
        with torch.no_grad():
            snap_memory = memory if aligner is model else aligner.encode(batch["x"], batch["x_len"])
            g = seeded_generator(self.seed, self.global_step + 7) if self.align_sampling else None
            counts, _ = aligner.align(snap_memory, targets, g)
        return counts

    def _random_counts(self, targets: list[list[int]], n_blocks: list[int]) -> list[list[int]]:
        """A flat start: each target symbol in a uniformly random block (order kept)."""
        g = seeded_generator(self.seed, self.global_step)
        out = []
        for t, n in zip(targets, n_blocks):
            blocks = torch.randint(0, n, (len(t),), generator=g).tolist()
            out.append(counts_from_blocks(blocks, n))
        return out

    def training_step(self, batch, batch_idx):
        x, x_len = batch["x"], batch["x_len"]
        targets = _targets(batch)
        rng = np.random.default_rng([self.seed, self.global_step]) if self.raml else None
        if getattr(self.model, "needs_alignment", False):
            memory = self.model.encode(x, x_len)
            counts = self._counts(batch, memory, targets)
            if self.raml:
                sampled = []
                for t, c in zip(targets, counts):
                    blocks = [b for b, k in enumerate(c) for _ in range(k)]
                    new_t, new_b = self._sampler().sample(t, rng, blocks)
                    sampled.append((new_t, counts_from_blocks(new_b, len(c))))
                targets, counts = [s[0] for s in sampled], [s[1] for s in sampled]
            tokens, blocks, mask = self.model.pack_aligned(targets, counts, x.device)
            nll = -self.model.aligned_logprob(memory, tokens, blocks, mask)
        else:
            if self.raml:
                targets = [self._sampler().sample(t, rng)[0] for t in targets]
            y, y_len = pad_sequences([torch.tensor(t, dtype=torch.long) for t in targets])
            nll = self.model.nll(x, x_len, y.to(x.device), y_len.to(x.device))
        loss = nll.mean()
        self.log("train/loss", loss.detach(), prog_bar=True)
        return self.check_finite(loss)

    # --- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def _evaluate_batch(self, batch, with_logprob: bool):
        """(utterance indices, decoded symbols, (symbols emitted before the last block, all
        symbols), summed log probability) for one evaluation batch."""
        model = self.model
        x, x_len = batch["x"], batch["x_len"]
        logprob, early, total = 0.0, 0, 0
        if getattr(model, "needs_alignment", False):
            memory = model.encode(x, x_len)
            if with_logprob:
                _, lp = model.align(memory, _targets(batch))
                logprob = float(lp.sum())
            hyps, blocks = model.decode(memory, self.eval_beam, return_blocks=True)
            for blk, n in zip(blocks, memory.n_blocks.tolist()):
                early += sum(b < n - 1 for b in blk)
                total += len(blk)
        else:
            if with_logprob:
                logprob = -float(model.nll(x, x_len, batch["y"], batch["y_len"]).sum())
            hyps = model.decode(x, x_len)
        return batch["idx"].tolist(), hyps, (early, total), logprob

    def _scores(self, split: str, prefix: str, results) -> dict[str, float]:
        dm = self.trainer.datamodule
        refs, score_map = dm.references(split), dm.score_map.cpu()
        hyps, matched, early, total = [], [], 0, 0
        for idx, hs, (n_early, n_total) in results:
            early, total = early + n_early, total + n_total
            for i, h in zip(idx, hs):
                hyps.append(fold(h, score_map))
                matched.append(refs[i])
        edits, length, wrong = error_counts(hyps, matched)
        out = {
            f"{prefix}/{self.token_error_metric}": edits / max(1, length),
            f"{prefix}/err": wrong / max(1, len(hyps)),
        }
        if getattr(self.model, "needs_alignment", False):
            # online output: the share of decoded symbols emitted before the input's last block
            out[f"{prefix}/emitted_early"] = early / max(1, total)
        return out

    def on_validation_epoch_start(self) -> None:
        self._val = {"results": [], "logprob": 0.0, "n": 0}

    def validation_step(self, batch, batch_idx):
        idx, hyps, emitted, logprob = self._evaluate_batch(batch, with_logprob=True)
        self._val["results"].append((idx, hyps, emitted))
        self._val["logprob"] += logprob
        self._val["n"] += len(idx)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        metrics = self._scores("dev", "val", self._val["results"])
        val_logprob = self._val["logprob"] / max(1, self._val["n"])
        metrics["val/logprob"] = val_logprob
        metrics["train/lr"] = float(self.trainer.optimizers[0].param_groups[0]["lr"])
        self.record_eval(metrics)
        in_warmup = self.global_step * self.trainer.datamodule.batch_size <= self.align_warmup
        if in_warmup and self.align_warmup:
            # random-alignment training is not the objective: its log probs do not count
            val_logprob_seen = None
        else:
            val_logprob_seen = val_logprob
        if self.lr_halving and self._prev_val_logprob is not None and val_logprob_seen is not None:
            if val_logprob < self._prev_val_logprob and self._halvings < int(
                self.lr_halving.get("max_times", 4)
            ):
                for group in self.trainer.optimizers[0].param_groups:
                    group["lr"] *= float(self.lr_halving.get("factor", 0.5))
                self._halvings += 1
        self._prev_val_logprob = val_logprob_seen
        better = self._best is None or val_logprob > self._best["logprob"]
        if self.select_best and val_logprob_seen is not None and better:
            state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            self._best = {"logprob": val_logprob, "step": self.global_step, "state": state}
        if self.stop_at and metrics.get(self.stop_at["metric"], float("inf")) <= float(
            self.stop_at["value"]
        ):
            self.trainer.should_stop = True

    def on_train_end(self) -> None:
        """Score the test set once, with the selected parameters."""
        dm = self.trainer.datamodule
        if self.select_best and self._best is not None:
            self.model.load_state_dict(self._best["state"])
            self.final_extra["val/best_logprob"] = self._best["logprob"]
            self.final_extra["train/best_step"] = float(self._best["step"])
        was_training = self.model.training
        self.model.eval()
        results = []
        for batch in dm.test_batches():
            batch = {k: v.to(self.device) for k, v in batch.items()}
            idx, hyps, emitted, _ = self._evaluate_batch(batch, with_logprob=False)
            results.append((idx, hyps, emitted))
        self.model.train(was_training)
        self.final_extra.update(self._scores("test", "test", results))
        self.final_extra["train/steps"] = float(self.global_step)
        self.final_extra["train/examples"] = float(self.global_step * dm.batch_size)
        self.final_extra["time/train_s"] = self._train_seconds
        self.final_extra["train/lr_halvings"] = float(self._halvings)

    # --- checkpoints -------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["transduction"] = {
            "align_state": self._align_model[0].state_dict() if self._align_model else None,
            "align_version": self._align_version,
            "halvings": self._halvings,
            "prev_val_logprob": self._prev_val_logprob,
            "best": self._best,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("transduction", {})
        if state.get("align_state") is not None:
            self._align_model = [copy.deepcopy(self.model).requires_grad_(False)]
            self._align_model[0].load_state_dict(state["align_state"])
            self._align_version = state["align_version"]
        self._halvings = state.get("halvings", 0)
        self._prev_val_logprob = state.get("prev_val_logprob")
        self._best = state.get("best")
