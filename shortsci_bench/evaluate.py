"""Score a checkpoint with its experiment's own evaluation, without training.

    python -m shortsci_bench.evaluate ckpt=runs/<name>/<arm>/<tier>/seed<N>-<hash>/checkpoints/last.ckpt

The run's folder holds the resolved config it ran with (`config.yaml`); the evaluation
builds that experiment's data and task from it, loads the checkpoint's weights (and the
task's history and RNG state, as a resume would), runs one evaluation pass (the same one
that training runs every `eval_every` steps) and writes a record marked as an evaluation
to `<run>/evaluations/eval-<time>.json`. It is never read as a training run: the collector
looks for `result.json` only. The record names the checkpoint, its sha256 and its step.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from shortsci_bench.threads import blas_threads_from_argv

if __name__ == "__main__":  # `threads=N` must size numpy's BLAS pool before numpy loads
    blas_threads_from_argv(sys.argv, os.environ)

from shortsci_bench.config import ConfigError, register_resolvers  # noqa: E402

EVAL_DIR = "evaluations"


def _parse(argv: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep and "ckpt" not in out:
            key, value = "ckpt", arg  # a bare path is the checkpoint
        elif not sep or key not in ("ckpt", "out", "threads"):
            raise ConfigError(f"unknown argument {arg!r}: use ckpt=PATH [out=FILE] [threads=N]")
        out[key] = value
    if "ckpt" not in out:
        raise ConfigError("no checkpoint given: use ckpt=runs/.../checkpoints/last.ckpt")
    return out


def evaluate(ckpt: str | Path, out: str | Path | None = None, threads: int | None = None):
    """Evaluate `ckpt`; write and return (record, path)."""
    import lightning as L
    import torch
    from omegaconf import OmegaConf

    from shortsci_bench import config
    from shortsci_bench.run import build_task, quiet_known_noise, run_provenance
    from shortsci_bench.runs import checkpoints, provenance
    from shortsci_bench.runs.record import (
        RunRecord,
        read_record,
        strict,
        write_json_atomic,
    )

    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise ConfigError(f"checkpoint {ckpt} does not exist: pass a run's checkpoints/last.ckpt")
    run_dir = ckpt.resolve().parent.parent
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(
            f"{cfg_path} not found: ckpt= must be a run's checkpoints/last.ckpt, whose run "
            "folder holds the config it ran with"
        )
    quiet_known_noise()
    register_resolvers()
    cfg = OmegaConf.load(cfg_path)
    chash = config.config_hash(cfg)
    why = checkpoints.problem(ckpt, chash)
    if why:
        raise ConfigError(f"checkpoint {ckpt} cannot be evaluated: {why}")
    torch.set_num_threads(int(threads) if threads else config.cpu_threads("auto"))
    t0 = time.perf_counter()
    started = provenance.now()
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = config_instantiate(cfg.dataset)
    task = build_task(cfg)
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    for key in ("max_steps", "max_epochs", "val_check_interval", "check_val_every_n_epoch"):
        trainer_kwargs.pop(key, None)
    trainer_kwargs.update(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, num_sanity_val_steps=0
    )
    trainer_kwargs.pop("enable_model_summary", None)
    restored = _restored_callback()
    trainer = L.Trainer(**trainer_kwargs, enable_model_summary=False, callbacks=[restored])
    trainer.validate(task, datamodule=datamodule, ckpt_path=str(ckpt), verbose=False)
    step = restored.step
    if len(task.history) != restored.history + 1:  # the checkpoint's history, then this one
        raise RuntimeError(f"{cfg.name}: the evaluation recorded no metrics")
    row = dict(task.history[-1])
    row.pop("step", None)  # validate() does not restore the loop's step: the checkpoint's is used
    row.pop("train/loss_window", None)  # a training quantity carried by the checkpoint
    try:
        trained = read_record(run_dir / "result.json")
    except ValueError:
        trained = None
    record = RunRecord(
        experiment=str(cfg.name),
        arm=str(cfg.arm),
        tier=str(cfg.tier),
        variant=cfg.get("variant"),
        settings_hash=config.settings_hash(cfg),
        seed=int(cfg.seed),
        config_hash=chash,
        status="completed",
        metrics=row,
        history=[{"step": float(step), **row}],
        wall_time_s=time.perf_counter() - t0,
        notes=[f"evaluation of {ckpt.name} at step {step}, not a training run"],
        evaluation={
            "checkpoint": str(ckpt.resolve()),
            "checkpoint_sha256": checkpoints.sha256(ckpt),
            "step": step,
            "training_record": str(run_dir / "result.json") if trained else None,
            "training_status": trained.status if trained else None,
        },
        provenance=run_provenance(
            cfg,
            started,
            data=datamodule.provenance() if hasattr(datamodule, "provenance") else {},
        ),
    )
    record = strict(record)
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = run_dir / EVAL_DIR / f"eval-{stamp}.json"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, record.model_dump(mode="json"))
    return record, out


def _restored_callback():
    import lightning as L

    class Restored(L.Callback):
        """What the checkpoint held, seen as Lightning restores it (so it is read once):
        its global step and the length of its evaluation history."""

        step, history = -1, 0

        def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
            self.step = int(checkpoint.get("global_step", -1))
            self.history = len(checkpoint.get("harness", {}).get("history", []))

    return Restored()


def config_instantiate(node):
    from hydra.utils import instantiate

    return instantiate(node)


def main(argv: list[str] | None = None) -> int:
    from shortsci_bench.data.errors import DataCorruptError, DatasetMissingError

    try:
        args = _parse(sys.argv[1:] if argv is None else argv)
        record, path = evaluate(args["ckpt"], args.get("out"), args.get("threads"))
    except (ConfigError, DatasetMissingError, DataCorruptError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    step = record.evaluation["step"]
    print(f"[shortsci] {record.experiment} arm={record.arm} seed={record.seed} at step {step}:")
    for key, value in sorted(record.metrics.items()):
        print(f"[shortsci]   {key} = {value:.6g}" if value is not None else f"  {key} = null")
    print(f"[shortsci] evaluation record: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
