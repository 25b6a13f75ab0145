"""Several seeds of one arm in one process, trained as one stacked ensemble (issue 15).

`python -m shortsci_bench +experiment=NAME tier=TIER arm=ARM seeds=0,1,2` lands here.

Each seed is built exactly as its single run builds it (`seed_everything(seed)`, then the
datamodule, then the task), so it starts from the same initialisation, reads its own batch
stream (a function of its seed and the global step) and owns a copy of the global RNG
state, taken where the single run's training would start. Training then stacks the seeds'
parameters and buffers (`torch.func.stack_module_state`) and runs the task's `seed_loss`
under `torch.func.vmap`: one Lightning step is one step of every seed, all seeds in the same
kernels, one optimizer over the stacked tensors (the update of SGD or Adam is elementwise,
so each seed's slice moves as its own optimizer would move it). Batch norm's running
statistics are stacked buffers updated in place, per seed. A model that draws random numbers
during training (dropout, weight noise) draws them *outside* the vmapped call, through the
task's `draw_noise`, each seed under its own RNG state, so it draws the numbers its single
run draws; `vmap(randomness="error")` stops a model that would draw inside.

Evaluation, probes and end-of-run measurements run each seed's own task on its own model,
into which the stacked weights are copied before each evaluation: they are the single run's
code, unchanged. Each seed's history, divergence bound, logs and record are its own; a seed
that diverges stops (its record says so) while the others go on.

Checkpoints: one for the batch, in `<runs>/<name>/<arm>/<tier>/batch-s<seeds>-<hash>/`,
written after every evaluation like a single run's; the same command resumes it. Each seed
still has its own run folder, lock, config hash and record, so finished seeds are skipped,
the collector pools the records with single runs, and a seed with a single run's checkpoint
resumes that way. Provenance (`seed_batch`) says a record ran batched and with which seeds.

Numerics: `vmap` turns each seed's matrix products into batched ones (`bmm`), whose
floating-point summation order may differ from the single run's `mm`, so metrics agree to
float reassociation, not always bit for bit (tests/test_seedbatch.py states the tolerance).
"""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Iterator, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from shortsci_bench.tasks.base import HarnessTask

# --- which experiments batch -------------------------------------------------------------


def batching_problem(cfg: Any, task: HarnessTask | None = None) -> str | None:
    """Why this config's seeds cannot be stacked (None when they can)."""
    setting = cfg.get("seed_batching")
    if setting not in (True, "vmap"):
        return (
            f"experiment {cfg.name!r} does not say `seed_batching: true` (seed_batching={setting})"
        )
    clip = (cfg.get("trainer") or {}).get("gradient_clip_val")
    if clip and (cfg.trainer.get("gradient_clip_algorithm") or "norm") == "norm":
        return "gradient clipping by norm would take the norm over all seeds together"
    if int((cfg.get("trainer") or {}).get("devices") or 1) != 1:
        return "several devices (DDP): run one process per seed"
    if task is not None:
        return task.seed_batching_problem()
    return None


# --- RNG state per seed ------------------------------------------------------------------


class SeedRNG:
    """A seed's copy of the global RNGs (torch CPU, CUDA, numpy, python): `with rng:` makes
    it the global state, and keeps what the code inside left there as the seed's state."""

    def __init__(self, cuda: bool = False):
        self.cuda = cuda and torch.cuda.is_available()
        self.state = self._get()

    def _get(self) -> dict[str, Any]:
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if self.cuda else [],
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        }

    def _set(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        if self.cuda and state["cuda"]:
            torch.cuda.set_rng_state_all(state["cuda"])
        np.random.set_state(state["numpy"])
        random.setstate(state["python"])

    def __enter__(self) -> SeedRNG:
        self._outer = self._get()
        self._set(self.state)
        return self

    def __exit__(self, *exc: object) -> None:
        self.state = self._get()
        self._set(self._outer)

    @contextlib.contextmanager
    def torch_only(self) -> Iterator[None]:
        """The torch generators only: cheap enough for every step's noise draws."""
        outer = torch.get_rng_state()
        outer_cuda = torch.cuda.get_rng_state_all() if self.cuda else []
        torch.set_rng_state(self.state["torch"])
        if self.cuda and self.state["cuda"]:
            torch.cuda.set_rng_state_all(self.state["cuda"])
        try:
            yield
        finally:
            self.state["torch"] = torch.get_rng_state()
            if self.cuda:
                self.state["cuda"] = torch.cuda.get_rng_state_all()
            torch.set_rng_state(outer)
            if self.cuda and outer_cuda:
                torch.cuda.set_rng_state_all(outer_cuda)


class _SeedTrainer:
    """What a seed's task sees as its trainer: the real one, except that `should_stop` is
    the seed's own (a seed that diverges stops itself, not the batch)."""

    def __init__(self, trainer: L.Trainer):
        object.__setattr__(self, "_real", trainer)
        object.__setattr__(self, "should_stop", False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "should_stop":
            object.__setattr__(self, name, value)
        else:
            setattr(self._real, name, value)


class _Loss(nn.Module):
    """`functional_call` calls `forward`: this one is the task's `seed_loss`."""

    def __init__(self, task: HarnessTask):
        super().__init__()
        self.task = task

    def forward(self, batch: Any, noise: Any) -> torch.Tensor:
        return self.task.seed_loss(batch, noise)


def _stack(items: Sequence[Any]) -> Any:
    """Stack the seeds' batches (or noise) leaf by leaf on a new dim 0; None stays None."""
    first = items[0]
    if first is None:
        return None
    if torch.is_tensor(first):
        return torch.stack(list(items))
    if isinstance(first, (list, tuple)):
        return type(first)(_stack([item[k] for item in items]) for k in range(len(first)))
    if isinstance(first, dict):
        return {k: _stack([item[k] for item in items]) for k in first}
    raise TypeError(f"cannot stack {type(first).__name__} across seeds")


def _dims(tree: Any) -> Any:
    """vmap's in_dims for a stacked tree: 0 for each tensor, None where a leaf is None."""
    if tree is None:
        return None
    if torch.is_tensor(tree):
        return 0
    if isinstance(tree, (list, tuple)):
        return type(tree)(_dims(t) for t in tree)
    return {k: _dims(v) for k, v in tree.items()}


def _zeros_like(tree: Any) -> Any:
    if tree is None:
        return None
    if torch.is_tensor(tree):
        return torch.zeros_like(tree)
    if isinstance(tree, (list, tuple)):
        return type(tree)(_zeros_like(t) for t in tree)
    return {k: _zeros_like(v) for k, v in tree.items()}


# --- the ensemble ------------------------------------------------------------------------


class SeedBatchTask(L.LightningModule):
    """S seeds' tasks trained as one: stacked parameters, one vmapped loss per step."""

    def __init__(
        self,
        tasks: Sequence[HarnessTask],
        seeds: Sequence[int],
        rngs: Sequence[SeedRNG],
        how: str = "auto",
    ):
        """`how`: `auto` (the task's `stacked_losses` where it has one, else vmap) or `vmap`."""
        super().__init__()
        self.how = how
        self.seeds = [int(s) for s in seeds]
        # The seeds' own tasks are not submodules: Lightning neither optimizes nor moves
        # them; they evaluate on copies of the stacked weights (`_sync`).
        object.__setattr__(self, "tasks", list(tasks))
        self.rngs = list(rngs)
        template = copy.deepcopy(tasks[0])
        template._trainer = None
        object.__setattr__(self, "_loss_module", _Loss(template))
        params, buffers = stack_module_state(list(tasks))
        self.param_names = list(params)
        self.buffer_names = list(buffers)
        self.stacked = nn.ParameterList([nn.Parameter(params[k].detach().clone()) for k in params])
        for i, k in enumerate(self.buffer_names):
            self.register_buffer(f"buf{i}", buffers[k].clone())
        self.stopped = [False] * len(tasks)  # a seed that diverged: its record is final
        self._attached = False
        self._stopped_now: list[int] = []  # seeds whose loss turned non-finite this step
        self.used = ""  # which way the last step went: stacked_losses or vmap

    # the stacked state as functional_call wants it
    def _stacked_params(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.param_names, self.stacked))

    def _stacked_buffers(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, f"buf{i}") for i, k in enumerate(self.buffer_names)}

    def _one_seed(self, params, buffers, batch, noise) -> torch.Tensor:
        state = {f"task.{k}": v for k, v in {**params, **buffers}.items()}
        return functional_call(self._loss_module, state, (batch, noise))

    def losses(self, batch: Any, noise: Any) -> torch.Tensor:
        """Every seed's loss (S,): the task's stacked fast path, or vmap over `seed_loss`."""
        params, buffers = self._stacked_params(), self._stacked_buffers()
        if self.how != "vmap":
            out = self._loss_module.task.stacked_losses(params, buffers, batch, noise)
            if out is not None:
                self.used = "stacked_losses"
                return out
        self.used = "vmap"
        in_dims = (0, 0, 0, _dims(noise))
        return vmap(self._one_seed, in_dims=in_dims, randomness="error")(
            params, buffers, batch, noise
        )

    @torch.no_grad()
    def _sync(self, i: int) -> None:
        """Copy seed i's slice of the stacked weights into its own task."""
        own = dict(self.tasks[i].named_parameters())
        own.update(dict(self.tasks[i].named_buffers()))
        for k, v in {**self._stacked_params(), **self._stacked_buffers()}.items():
            own[k].copy_(v[i])

    def active(self) -> list[int]:
        return [i for i, done in enumerate(self.stopped) if not done]

    def _call(self, i: int, hook: str, *args: Any) -> Any:
        with self.rngs[i]:
            return getattr(self.tasks[i], hook)(*args)

    def _attach(self) -> None:
        self._attached = True
        for task in self.tasks:
            task._trainer = _SeedTrainer(self.trainer)
            task.to(self.device)
        self._loss_module.to(self.device)

    # --- training --------------------------------------------------------------------
    def configure_optimizers(self):
        task = self.tasks[0]  # every seed has the same settings
        opt = task.optimizer_factory(params=list(self.stacked))
        if task.scheduler_factory is None:
            return opt
        return {
            "optimizer": opt,
            "lr_scheduler": {
                "scheduler": task.scheduler_factory(optimizer=opt),
                "interval": "step",
            },
        }

    def on_fit_start(self) -> None:
        self._attach()

    def on_validation_start(self) -> None:
        if not self._attached:  # validate-only runs skip on_fit_start
            self._attach()

    def on_train_start(self) -> None:
        for i in range(len(self.tasks)):
            self._call(i, "on_train_start")

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        for i in self.active():
            self.tasks[i].on_train_batch_start(batch[i], batch_idx)

    def training_step(self, batches: Sequence[Any], batch_idx: int):
        active = self.active()
        noises = []
        for i, task in enumerate(self.tasks):
            if task.before_seed_step is not None and i in active:
                # on the seed's own task, whose weights are those of the last evaluation (at
                # step 0 the initialisation, the only weights VariationalDropoutTask reads)
                self._call(i, "before_seed_step", batches[i])
            with self.rngs[i].torch_only():
                noises.append(task.draw_noise(batches[i]) if i in active else None)
        if any(n is None for n in noises) and any(n is not None for n in noises):
            # a stopped seed draws nothing; give it zeros of a running seed's shapes
            ref = next(n for n in noises if n is not None)
            noises = [n if n is not None else _zeros_like(ref) for n in noises]
        batch = _stack(list(batches))
        noise = _stack(noises) if noises[0] is not None else None
        losses = self.losses(batch, noise)
        kept = []
        for i in active:
            if self.tasks[i].check_finite(losses[i]) is None:
                self._stop(i)
                self._stopped_now.append(i)
            else:
                kept.append(i)
        if not kept:
            return None
        return losses[kept].sum()  # the seeds' parameters are disjoint: each gets its own gradient

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        for i in self.active():
            self.tasks[i].on_train_batch_end(outputs, batch[i], batch_idx)
        # A single run whose loss turns non-finite still counts the batch (Lightning calls
        # the optimizer, which finds no gradient), then validates: so here, at that step.
        for i in self._stopped_now:
            self._evaluate_alone(i)
        self._stopped_now = []
        self._stop_if_all_stopped()

    def on_train_end(self) -> None:
        for i in range(len(self.tasks)):
            if not self.stopped[i]:
                self._sync(i)
            self.tasks[i].train()
            self._call(i, "on_train_end")

    def _stop(self, i: int) -> None:
        """Seed i diverged: its task keeps the weights it stopped with (the single run's
        end state) and takes no further part; the others go on."""
        self._sync(i)
        self.stopped[i] = True

    def _stop_if_all_stopped(self) -> None:
        if not self.active():
            self.trainer.should_stop = True

    # --- evaluation: each seed's own task on its own weights -------------------------
    @torch.no_grad()
    def _evaluate_alone(self, i: int) -> None:
        """The evaluation a single run gets when it stops between evaluations (Lightning
        validates when training stops early), at the step where this seed stopped."""
        loader = self.trainer.datamodule.datamodules[i].val_dataloader()
        self.tasks[i].eval()
        self._call(i, "on_validation_epoch_start")
        for k, batch in enumerate(loader):
            self._call(i, "validation_step", batch, k)
        self._call(i, "on_validation_epoch_end")
        self.tasks[i].train()

    def on_validation_epoch_start(self) -> None:
        for i in self.active():
            self._sync(i)
            self.tasks[i].eval()
            self._call(i, "on_validation_epoch_start")

    def validation_step(self, batches: Sequence[Any], batch_idx: int) -> None:
        for i in self.active():
            self._call(i, "validation_step", batches[i], batch_idx)

    def on_validation_epoch_end(self) -> None:
        for i in self.active():
            self._call(i, "on_validation_epoch_end")
            self.tasks[i].train()
            if self.tasks[i].diverged:  # the divergence bound, judged at evaluations
                self._stop(i)
        self._stop_if_all_stopped()

    # --- checkpoints: the stacked state (Lightning's) plus each seed's harness state ----
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        seeds = []
        for i in range(len(self.tasks)):
            own: dict[str, Any] = {}
            self._call(i, "on_save_checkpoint", own)  # its RNG: the seed's, not the process's
            seeds.append(own)
        checkpoint["seed_batch"] = {"seeds": self.seeds, "stopped": self.stopped, "tasks": seeds}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["seed_batch"]
        if list(state["seeds"]) != self.seeds:
            raise ValueError(f"checkpoint holds seeds {state['seeds']}, not {self.seeds}")
        self.stopped = list(state["stopped"])
        for i, own in enumerate(state["tasks"]):
            self._call(i, "on_load_checkpoint", own)  # sets the seed's RNG state too


# --- data: each seed's own stream, zipped ------------------------------------------------


class _Zip:
    """Per-seed loaders read in step: item i is the tuple of every seed's item i."""

    def __init__(self, loaders: Sequence[Any]):
        self.loaders = list(loaders)

    def __len__(self) -> int:
        return min(len(x) for x in self.loaders)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(zip(*self.loaders))

    # resumable mid-epoch when every seed's stream is (Lightning checks these two)
    def state_dict(self) -> dict[str, Any]:
        return {"seeds": [x.state_dict() if hasattr(x, "state_dict") else {} for x in self.loaders]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for x, s in zip(self.loaders, state.get("seeds", [])):
            if hasattr(x, "load_state_dict"):
                x.load_state_dict(s)


class SeedBatchData(L.LightningDataModule):
    """The seeds' datamodules side by side; each keeps its own seed and batch stream."""

    def __init__(self, datamodules: Sequence[L.LightningDataModule]):
        super().__init__()
        self.datamodules = list(datamodules)

    def prepare_data(self) -> None:
        self.datamodules[0].prepare_data()

    def setup(self, stage: str | None = None) -> None:
        for dm in self.datamodules:
            dm.trainer = self.trainer
            dm.setup(stage)

    def train_dataloader(self) -> _Zip:
        return _Zip([dm.train_dataloader() for dm in self.datamodules])

    def val_dataloader(self) -> _Zip:
        return _Zip([dm.val_dataloader() for dm in self.datamodules])
