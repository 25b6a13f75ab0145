"""What a run shows on a terminal: its resolved config as a tree, and a progress bar.

The bar counts global steps against `trainer.max_steps`, so it is right after a resume
(it starts at the checkpoint's step, not at 0) and never shows Lightning's "Epoch 0/-2"
of step-bounded runs. It shows the training loss (the mean since the last evaluation, read
at most twice a second: reading a GPU loss synchronises) and the last evaluation's value of
the experiment's first metric. On a non-interactive output (CI logs, sweeps to a file)
there is no bar; the run prints its one-line messages as before.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf

REFRESH_S = 0.5  # how often the loss is read from the model


class StepProgressBar(ProgressBar):
    """A rich bar over global steps with loss and the run's metric (see the module doc)."""

    def __init__(self, label: str = "", metrics: list[str] | None = None, console=None):
        super().__init__()
        self.label = label
        self.console = console  # a rich Console; None: the terminal
        self.metrics = list(metrics or [])
        self._enabled = True
        self._progress = None
        self._task_id = None
        self._last_read = 0.0
        self.loss: float | None = None
        self.metric: tuple[str, float] | None = None

    # ProgressBar's switch, which Lightning calls for non-zero ranks
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    # --- what the bar says: plain functions of the trainer, tested without a terminal ----
    @staticmethod
    def steps(trainer) -> tuple[int, int | None]:
        """(steps done, steps in all): the global step, so a resumed run starts where it was."""
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        return int(trainer.global_step), total

    def read_loss(self, pl_module) -> float | None:
        """The mean training loss since the last evaluation (the task's own window)."""
        window, n = (
            getattr(pl_module, "_loss_window", None),
            getattr(pl_module, "_loss_window_n", 0),
        )
        if window is None or not n:
            return self.loss
        return float(window) / n  # nan or inf shown as such: a diverging run should say so

    def read_metric(self, pl_module) -> tuple[str, float] | None:
        """The last evaluation's value of the first of `metrics` it has (else none)."""
        history = getattr(pl_module, "history", None) or []
        if not history:
            return self.metric
        row = history[-1]
        for name in self.metrics:
            if row.get(name) is not None:
                return name, float(row[name])
        return self.metric

    def fields(self) -> str:
        parts = []
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4g}")
        if self.metric is not None:
            parts.append(f"{self.metric[0]} {self.metric[1]:.4g}")
        return "  ".join(parts)

    # --- Lightning hooks --------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        if not self._enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        done, total = self.steps(trainer)
        self.metric = self.read_metric(pl_module)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            refresh_per_second=4,
            console=self.console,
        )
        self._progress.start()
        self._task_id = self._progress.add_task(
            self.label, total=total, completed=done, info=self.fields()
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._progress is None:
            return
        now = time.monotonic()
        update: dict[str, Any] = {"completed": int(trainer.global_step)}
        if now - self._last_read >= REFRESH_S:
            self._last_read = now
            self.loss = self.read_loss(pl_module)
            update["info"] = self.fields()
        self._progress.update(self._task_id, **update)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._progress is None or trainer.sanity_checking:
            return
        self.metric = self.read_metric(pl_module)
        self._progress.update(self._task_id, info=self.fields())

    def on_train_end(self, trainer, pl_module) -> None:
        self._stop()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._stop()

    def teardown(self, trainer, pl_module, stage) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def config_tree(cfg: DictConfig, run_dir: Path | None = None):
    """The resolved config as a rich Tree (one branch per top-level block), the run's
    folder at its root: what lightning-hydra-template users expect to see at the start."""
    from rich.syntax import Syntax
    from rich.tree import Tree

    title = f"resolved config of {cfg.get('name')} arm={cfg.get('arm')} seed={cfg.get('seed')}"
    tree = Tree(f"[bold]{title}[/]" + (f"  ->  {run_dir}" if run_dir else ""))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    skip = {"tiers", "arms", "metrics", "learning_check", "hydra"}  # the overlays: applied
    scalars = {k: v for k, v in resolved.items() if not isinstance(v, dict) and k not in skip}
    if scalars:
        branch = tree.add("[bold]run[/]")
        branch.add(Syntax(OmegaConf.to_yaml(OmegaConf.create(scalars)).rstrip(), "yaml"))
    for key, value in resolved.items():
        if isinstance(value, dict) and key not in skip and value:
            branch = tree.add(f"[bold]{key}[/]")
            branch.add(Syntax(OmegaConf.to_yaml(OmegaConf.create(value)).rstrip(), "yaml"))
    return tree


def print_config_tree(cfg: DictConfig, run_dir: Path | None = None) -> None:
    from rich.console import Console

    Console().print(config_tree(cfg, run_dir))


__all__ = ["StepProgressBar", "config_tree", "print_config_tree"]
