"""One run, top to bottom: config -> datamodule + model -> task -> trainer -> run record.

`python -m shortsci_bench +experiment=NAME tier=TIER seed=N arm=ARM` lands here.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from filelock import FileLock, Timeout
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf

from shortsci_bench import config
from shortsci_bench.data.errors import DatasetMissingError
from shortsci_bench.runs import provenance
from shortsci_bench.runs.record import RECORD_NAME, Provenance, RunRecord, read_record, write_record

CHECKPOINT = "last.ckpt"


def quiet_known_noise() -> None:
    """Drop library chatter that says nothing about this run (advertising, deprecations
    inside Lightning itself), so a run's log shows what matters."""
    import logging
    import warnings

    for pattern in (
        ".*LeafSpec.*",
        ".*`weights_only` was not set.*",
        ".*smaller than the logging interval.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)

    class _DropTips(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            msg = record.getMessage()
            return "litlogger" not in msg and "`weights_only` was not set" not in msg

    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_DropTips())


def run_dir_for(cfg: DictConfig, chash: str) -> Path:
    tier = f"{cfg.tier}~{cfg.variant}" if cfg.get("variant") else str(cfg.tier)
    return Path(cfg.runs_dir) / str(cfg.name) / str(cfg.arm) / tier / f"seed{cfg.seed}-{chash[:8]}"


class ResumeCheckpoint(Callback):
    """After every evaluation, replace `checkpoints/last.ckpt` atomically (write, then rename)."""

    def __init__(self, path: Path):
        self.path = path

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        tmp = self.path.with_suffix(".tmp")
        trainer.save_checkpoint(tmp, weights_only=False)  # full state: optimizer, loops, RNG
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        trainer.strategy.barrier()


class KillAtStep(Callback):
    """Fault injection for the resume test: SIGKILL this process at a given step."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def _progress_bar(setting: Any) -> list[Callback]:
    interactive = sys.stdout.isatty() and not os.environ.get("CI")
    if setting is True or (setting == "auto" and interactive):
        from lightning.pytorch.callbacks import RichProgressBar

        return [RichProgressBar()]
    return []


def _loggers(cfg: DictConfig, run_dir: Path) -> list:
    loggers = []
    for name, spec in (cfg.get("logger") or {}).items():
        if spec is None:
            continue
        if name == "wandb":
            os.environ.setdefault("WANDB_DIR", str(run_dir))
            if spec.get("offline", True):
                os.environ.setdefault("WANDB_MODE", "offline")
        loggers.append(instantiate(spec, save_dir=str(run_dir)))
    return loggers


def _say(msg: str) -> None:
    print(f"[shortsci] {msg}", flush=True)


def run(cfg: DictConfig, overrides: Sequence[str] = ()) -> RunRecord | None:
    """Train one configured run and write its record; return it (None if skipped).

    `overrides` are the command line's (Hydra's task overrides): they win over the
    experiment's tier and arm overlays, which `config.finalize` applies here.
    """
    quiet_known_noise()
    tier, why = config.finalize(cfg, overrides)
    threads = config.cpu_threads(cfg.get("threads", "auto"))
    torch.set_num_threads(threads)
    chash = config.config_hash(cfg)
    run_dir = run_dir_for(cfg, chash)
    record_path = run_dir / RECORD_NAME
    _say(
        f"{cfg.name} arm={cfg.arm} seed={cfg.seed}: tier `{tier}` ({why}); "
        f"expected runtime {config.tier_info(cfg).get('runtime', 'not stated')}"
    )
    if cfg.get("variant"):
        _say(
            f"settings differ from tier `{tier}`: recorded as variant `{cfg.variant}`, "
            "judged apart from the tier (never pooled with its seeds)"
        )

    if not cfg.get("force", False) and completed_record(cfg) is not None:
        _say(f"already done: {record_path} (pass force=true to run again)")
        return None

    run_dir.mkdir(parents=True, exist_ok=True)
    if _ddp_child():  # rank > 0 of a DDP launch: rank 0 holds the lock and writes the record
        return _train(cfg, tier, chash, run_dir, threads)
    lock = FileLock(str(run_dir / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        _say(f"another process is running this job ({run_dir}); skipping")
        return None
    try:
        return _train(cfg, tier, chash, run_dir, threads)
    finally:
        lock.release()


def _ddp_child() -> bool:
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0


def completed_record(cfg: DictConfig) -> RunRecord | None:
    """The finished record of exactly this config, if there is one."""
    path = run_dir_for(cfg, config.config_hash(cfg)) / RECORD_NAME
    try:
        done = read_record(path)
    except ValueError:
        return None
    return done if done.status == "completed" else None


def _train(cfg: DictConfig, tier: str, chash: str, run_dir: Path, threads: int) -> RunRecord:
    t0 = time.perf_counter()
    started = provenance.now()
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    ckpt_dir = run_dir / "checkpoints"
    ckpt_dir.mkdir(exist_ok=True)
    ckpt = ckpt_dir / CHECKPOINT
    if cfg.get("force", False) and ckpt.exists() and not (run_dir / RECORD_NAME).exists():
        pass  # an interrupted run: resume it even when forced
    elif cfg.get("force", False) and ckpt.exists():
        ckpt.unlink()
    resume = ckpt if ckpt.exists() else None
    if resume:
        _say(f"resuming from {resume}")

    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = instantiate(cfg.dataset)
    task = instantiate(cfg.task, model=instantiate(cfg.model))
    callbacks: list[Callback] = [
        ResumeCheckpoint(ckpt),
        *_progress_bar(cfg.trainer.get("enable_progress_bar", "auto")),
    ]
    kill_at = (cfg.get("debug") or {}).get("kill_at_step")
    if kill_at:
        callbacks.append(KillAtStep(int(kill_at)))
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_kwargs["enable_progress_bar"] = any(
        cb.__class__.__name__ == "RichProgressBar" for cb in callbacks
    )
    trainer = L.Trainer(
        **trainer_kwargs,
        logger=_loggers(cfg, run_dir),
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        enable_checkpointing=False,
    )

    status, error = "completed", None
    try:
        if getattr(task, "fit_free", False):  # e.g. nearest-neighbour baselines: evaluate only
            trainer.validate(task, datamodule=datamodule, verbose=False)
        else:
            trainer.fit(task, datamodule=datamodule, ckpt_path=str(resume) if resume else None)
        if task.diverged:
            status = "diverged"
    except (KeyboardInterrupt, DatasetMissingError, config.ConfigError):
        raise
    except Exception as exc:
        status, error = "failed", "".join(traceback.format_exception_only(exc)).strip()
        _say(f"run failed: {error}")
        if os.environ.get("SHORTSCI_RAISE"):
            raise

    commit, dirty = provenance.git_state()
    data_prov = datamodule.provenance() if hasattr(datamodule, "provenance") else {}
    record = RunRecord(
        experiment=str(cfg.name),
        arm=str(cfg.arm),
        tier=tier,
        variant=cfg.get("variant"),
        settings_hash=config.settings_hash(cfg),
        seed=int(cfg.seed),
        config_hash=chash,
        status=status,
        metrics=task.final_metrics() if status != "failed" else {},
        history=task.history,
        wall_time_s=time.perf_counter() - t0,
        stub=bool(data_prov.get("stub", False)),
        notes=list(config.tier_info(cfg).get("notes") or [])
        + [str(n) for n in data_prov.get("notes", [])],  # e.g. "stub data: ..." from the dataset
        error=error,
        provenance=Provenance(
            config=OmegaConf.to_container(cfg, resolve=True),
            command=provenance.command_line(),
            git_commit=commit,
            git_dirty=dirty,
            source_hash=provenance.source_hash(),
            versions=provenance.versions(),
            device=provenance.device_description(),
            hostname=provenance.hostname(),
            data=data_prov,
            started_at=started,
            finished_at=provenance.now(),
            threads=threads,
            resumed_from=str(resume) if resume else None,
        ),
    )
    if trainer.is_global_zero:
        path = write_record(run_dir, record)
        label = " [STUB DATA: a synthetic stand-in, not the real corpus]" if record.stub else ""
        _say(f"{status}{label}: {path}")
        for k, v in sorted(record.metrics.items()):
            _say(f"  {k} = {v:.6g}" + (" (stub)" if record.stub else ""))
    return record
