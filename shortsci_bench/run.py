"""One run, top to bottom: config -> datamodule + model -> task -> trainer -> run record.

`python -m shortsci_bench +experiment=NAME tier=TIER seed=N arm=ARM` lands here.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from filelock import FileLock, Timeout
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from shortsci_bench import config
from shortsci_bench.data.errors import DataCorruptError, DatasetMissingError
from shortsci_bench.registry import DONE_STATUSES
from shortsci_bench.runs import checkpoints, provenance
from shortsci_bench.runs.record import (
    RECORD_NAME,
    Provenance,
    RunRecord,
    read_record,
    strict,
    write_record,
)

CHECKPOINT = "last.ckpt"
# What a cluster sends to stop a job: SIGTERM (preemption, scancel, a timeout) and
# SIGUSR1/SIGUSR2 (SLURM's `--signal` warning before the time limit).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


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
    """After every evaluation, replace `checkpoints/last.ckpt` atomically (write, fsync,
    then rename), with a sidecar holding its sha256 and the config hash."""

    def __init__(self, path: Path, config_hash: str = ""):
        self.path, self.config_hash = path, config_hash

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.save(trainer)

    def save(self, trainer: L.Trainer) -> None:
        tmp = self.path.with_suffix(".tmp")
        trainer.save_checkpoint(tmp, weights_only=False)  # full state: optimizer, loops, RNG
        if trainer.is_global_zero:
            checkpoints.commit(tmp, self.path, self.config_hash)
        trainer.strategy.barrier()


class Interrupted(BaseException):
    """A stop signal ended the run after a checkpoint (BaseException: not a failure)."""


class StopOnSignal(Callback):
    """On SIGTERM, SIGUSR1 or SIGUSR2, finish the current batch, save `last.ckpt` there and
    stop, so the record says `interrupted` and the same command resumes the run.

    The handler only notes the signal: saving inside a handler could interrupt a half
    written checkpoint. Lightning chains its own SIGTERM handler after ours, and raises
    SIGTERMException after our `on_train_batch_end`, so the checkpoint comes first.
    """

    def __init__(self, checkpoint: ResumeCheckpoint):
        self.checkpoint = checkpoint
        self.received: str | None = None
        self.saved = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():  # signals need the main thread
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _note(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum).name

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.received:
            self.checkpoint.save(trainer)
            self.saved = True
            raise Interrupted(self.received)


class KillAtStep(Callback):
    """Fault injection for the resume tests: send this process a signal (SIGKILL unless
    `debug.kill_signal` names another) once, as the batch after `step` starts, so that it
    arrives mid-batch as a scheduler's would."""

    def __init__(self, step: int, sig: str = "SIGKILL"):
        self.step, self.sig, self.sent = step, signal.Signals[sig], False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step >= self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.sig)


def _interactive() -> bool:
    return sys.stdout.isatty() and not os.environ.get("CI")


def _progress_bar(setting: Any, cfg: DictConfig | None = None) -> list[Callback]:
    """A step bar with loss and the run's first metric (shortsci_bench.progress) on an
    interactive terminal, or when asked for; none in CI logs."""
    if setting is True or (setting == "auto" and _interactive()):
        from shortsci_bench.progress import StepProgressBar

        seeds = cfg.get("seeds") if cfg is not None else None
        which = f"seeds {','.join(map(str, seeds))}" if seeds is not None else f"seed {cfg.seed}"
        label = f"{cfg.name} {cfg.arm} {which}" if cfg is not None else ""
        metrics = list((cfg.get("metrics") or {}).keys()) if cfg is not None else []
        return [StepProgressBar(label, metrics)]
    return []


ATTEMPTS = "attempts.json"  # in logs/: the attempt folders of the run now in progress


def _attempts(run_dir: Path, resumed: bool) -> list[str]:
    """The log folders of this run's attempts, this one last (`logs/attempt-N`).

    Lightning's CSV logger rewrites `metrics.csv` in the folder it is given, so a resumed
    run that reused `logs/` lost every row written before the interruption: each attempt
    gets its own folder instead. A run started from scratch (first, or forced) lists only
    its own; a resumed one adds to the list of the attempts it continues.
    """
    logs = run_dir / "logs"
    taken = [int(p.name.split("-")[1]) for p in logs.glob("attempt-*") if p.name[8:].isdigit()]
    this = f"logs/attempt-{max(taken, default=0) + 1}"
    before: list[str] = []
    if resumed:
        try:
            before = list(json.loads((logs / ATTEMPTS).read_text()))
        except (OSError, ValueError):
            before = []
    attempts = [*before, this]
    logs.mkdir(parents=True, exist_ok=True)
    (logs / ATTEMPTS).write_text(json.dumps(attempts))
    return attempts


def _loggers(cfg: DictConfig, run_dir: Path, attempt: str) -> list:
    loggers = []
    for name, spec in (cfg.get("logger") or {}).items():
        if spec is None:
            continue
        if name == "wandb":
            os.environ.setdefault("WANDB_DIR", str(run_dir))
            if spec.get("offline", True):
                os.environ.setdefault("WANDB_MODE", "offline")
        if str(spec.get("_target_", "")).endswith("CSVLogger"):
            # run_dir/logs/attempt-N/metrics.csv: one file per attempt, none overwritten
            loggers.append(instantiate(spec, save_dir=str(run_dir), version=Path(attempt).name))
            continue
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

    if _ddp_child():  # rank > 0 of a DDP launch: rank 0 holds the lock and writes the record
        return _train(cfg, tier, chash, run_dir, threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    # The lock comes before the "already done" check: checked first, a second process
    # could see no record, wait out the first one's lock release, and run the job again.
    lock = FileLock(str(run_dir / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        _say(f"another process is running this job ({run_dir}); skipping")
        return None
    try:
        if not cfg.get("force", False) and done_record(cfg) is not None:
            _say(f"already done: {record_path} (pass force=true to run again)")
            return None
        checkpoints.clean_stray_temps(run_dir)  # ours to delete: we hold the lock
        return _train(cfg, tier, chash, run_dir, threads)
    finally:
        lock.release()


def build_task(cfg: DictConfig):
    """The task, with its divergence bound (`task.divergence`, a harness setting that its
    constructor does not take) set on it."""
    task_cfg = OmegaConf.to_container(cfg.task, resolve=True)
    bound = task_cfg.pop("divergence", None) or {}
    task = instantiate(task_cfg, model=instantiate(cfg.model))
    if "factor" in bound:  # null or 0: no bound, only a non-finite loss
        task.divergence_factor = float(bound["factor"] or 0.0)
    if "patience" in bound:
        task.divergence_patience = max(1, int(bound["patience"]))
    return task


def _ddp_child() -> bool:
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0


def _record_of(cfg: DictConfig) -> RunRecord | None:
    try:
        return read_record(run_dir_for(cfg, config.config_hash(cfg)) / RECORD_NAME)
    except ValueError:
        return None


def completed_record(cfg: DictConfig) -> RunRecord | None:
    """The completed record of exactly this config, if there is one."""
    done = _record_of(cfg)
    return done if done is not None and done.status == "completed" else None


def done_record(cfg: DictConfig) -> RunRecord | None:
    """The final record (completed, diverged or failed) of exactly this config: rerunning
    would repeat it. An `interrupted` record is not final: rerunning resumes it."""
    done = _record_of(cfg)
    return done if done is not None and done.status in DONE_STATUSES else None


def _train(cfg: DictConfig, tier: str, chash: str, run_dir: Path, threads: int) -> RunRecord:
    t0 = time.perf_counter()
    started = provenance.now()
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    _say(f"resolved config saved: {run_dir / 'config.yaml'} (print it: --cfg job --resolve)")
    shown = cfg.get("print_config", "auto")
    if shown is True or (shown == "auto" and _interactive()):
        from shortsci_bench.progress import print_config_tree

        print_config_tree(cfg, run_dir)
    ckpt_dir = run_dir / "checkpoints"
    ckpt_dir.mkdir(exist_ok=True)
    ckpt = ckpt_dir / CHECKPOINT
    if cfg.get("force", False) and ckpt.exists() and done_record(cfg) is not None:
        ckpt.unlink()  # re-run a finished job from scratch; an interrupted one resumes
        checkpoints.sidecar(ckpt).unlink(missing_ok=True)
    if not _ddp_child() and ckpt.exists() and (why := checkpoints.problem(ckpt, chash)):
        aside = checkpoints.move_aside(ckpt)
        _say(
            f"checkpoint {ckpt} not resumed: {why}; moved aside to {aside.name}, starting from scratch"
        )
    resume = ckpt if ckpt.exists() else None
    if resume:
        _say(f"resuming from {resume}")
    attempts = _attempts(run_dir, resumed=resume is not None) if not _ddp_child() else ["logs"]

    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    try:
        datamodule = instantiate(cfg.dataset)
        task = build_task(cfg)
    except (DatasetMissingError, DataCorruptError, config.ConfigError):
        raise
    except Exception as exc:  # a model or data that cannot be built is a failed run, recorded
        return _record_build_failure(cfg, tier, chash, run_dir, threads, exc, t0, started)
    trainer, stopper = _trainer(cfg, ckpt, chash, _loggers(cfg, run_dir, attempts[-1]), run_dir)

    def fit() -> None:
        if getattr(task, "fit_free", False):  # e.g. nearest-neighbour baselines: evaluate only
            trainer.validate(task, datamodule=datamodule, verbose=False)
        else:
            trainer.fit(task, datamodule=datamodule, ckpt_path=str(resume) if resume else None)

    status, error = _guarded(trainer, stopper, fit, "run failed")
    if status == "completed" and task.diverged:
        status = "diverged"
        error = getattr(task, "diverged_why", None) or "diverged: non-finite loss"
        _say(f"diverged: {error}")

    return _write_record(
        cfg, tier, chash, run_dir, threads, task, datamodule, trainer, status, error,
        t0=t0, started=started, resume=resume, attempts=attempts,
    )  # fmt: skip


def _trainer(
    cfg: DictConfig, ckpt: Path, key: str, logger: Any, root: Path
) -> tuple[L.Trainer, StopOnSignal]:
    """The Lightning trainer of a run (single or seed-batched): resume checkpoint under
    `key`, the signal stopper, the progress bar, the debug kill; no Lightning checkpoints."""
    saver = ResumeCheckpoint(ckpt, key)
    stopper = StopOnSignal(saver)
    callbacks: list[Callback] = [
        saver,
        stopper,
        *_progress_bar(cfg.trainer.get("enable_progress_bar", "auto"), cfg),
    ]
    debug = cfg.get("debug") or {}
    if debug.get("kill_at_step"):
        callbacks.append(KillAtStep(int(debug.kill_at_step), debug.get("kill_signal") or "SIGKILL"))
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_kwargs["enable_progress_bar"] = any(isinstance(cb, ProgressBar) for cb in callbacks)
    trainer = L.Trainer(
        **trainer_kwargs,
        logger=logger,
        callbacks=callbacks,
        default_root_dir=str(root),
        enable_checkpointing=False,
    )
    return trainer, stopper


def _guarded(
    trainer: L.Trainer, stopper: StopOnSignal, fit: Callable[[], None], failed: str
) -> tuple[str, str | None]:
    """Run `fit` under the signal stopper; the run's status and error: an interruption is
    resumable, a missing dataset or bad config is the user's to fix (raised), anything
    else is a failed run, recorded (raised under SHORTSCI_RAISE, for debugging)."""
    try:
        with stopper:
            fit()
    except (Interrupted, SIGTERMException):
        # SIGTERMException: Lightning's own stop, when SIGTERM came during an evaluation;
        # the checkpoint of the evaluation before it stays.
        saved = "checkpoint saved" if stopper.saved else "the last evaluation's checkpoint kept"
        error = (
            f"interrupted by {stopper.received or 'SIGTERM'} at step {trainer.global_step}: "
            f"{saved}; run the same command again to resume"
        )
        _say(error)
        return "interrupted", error
    except (KeyboardInterrupt, DatasetMissingError, DataCorruptError, config.ConfigError):
        raise
    except Exception as exc:
        error = "".join(traceback.format_exception_only(exc)).strip()
        _say(f"{failed}: {error}")
        if os.environ.get("SHORTSCI_RAISE"):
            raise
        return "failed", error
    return "completed", None


def _write_record(
    cfg: DictConfig,
    tier: str,
    chash: str,
    run_dir: Path,
    threads: int,
    task,
    datamodule,
    trainer: L.Trainer,
    status: str,
    error: str | None,
    *,
    t0: float,
    started: str,
    resume: Path | None,
    attempts: list[str],
    seed_batch: dict[str, Any] | None = None,
) -> RunRecord:
    """Build the run's record from its task and datamodule, write it (rank zero), say it."""
    data_prov = datamodule.provenance() if hasattr(datamodule, "provenance") else {}
    # no task: the run failed before one was built (nothing trained, no history)
    trained = {} if task is None else {"history": task.history}
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
        **trained,
        wall_time_s=time.perf_counter() - t0,
        stub=bool(data_prov.get("stub", False)),
        notes=list(config.tier_info(cfg).get("notes") or [])
        + [str(n) for n in data_prov.get("notes", [])],  # e.g. "stub data: ..." from the dataset
        error=error,
        provenance=run_provenance(
            cfg,
            started,
            data=data_prov,
            threads=threads,
            resumed_from=str(resume) if resume else None,
            attempts=attempts,
            seed_batch=seed_batch,
        ),
    )
    record = strict(record)  # non-finite values as null plus `nonfinite`, as written
    written_here = trainer.is_global_zero if trainer is not None else not _ddp_child()
    if written_here:
        path = write_record(run_dir, record)
        label = " [STUB DATA: a synthetic stand-in, not the real corpus]" if record.stub else ""
        _say(f"{status}{label}: {path}")
        for k, v in sorted(record.metrics.items()):
            shown = f"{v:.6g}" if v is not None else f"null ({record.nonfinite[f'metrics.{k}']})"
            _say(f"  {k} = {shown}" + (" (stub)" if record.stub else ""))
    return record


def _record_build_failure(cfg, tier, chash, run_dir, threads, exc, t0, started) -> RunRecord:
    """The record of a run whose model, task or data could not even be built (say, a
    negative init scale): `failed`, with the error, so a sweep reports it and goes on."""
    error = "".join(traceback.format_exception_only(exc)).strip()
    _say(f"run failed before training: {error}")
    if os.environ.get("SHORTSCI_RAISE"):
        raise exc
    return _write_record(
        cfg, tier, chash, run_dir, threads, None, None, None, "failed", error,
        t0=t0, started=started, resume=None, attempts=[],
    )  # fmt: skip


def run_provenance(cfg: DictConfig, started: str, **extra: Any) -> Provenance:
    """Where a record came from, as of now: the resolved config, the command, the git
    state and source hash, versions, device, host, and `extra` (data, threads, ...)."""
    commit, dirty = provenance.git_state()
    return Provenance(
        config=OmegaConf.to_container(cfg, resolve=True),
        command=provenance.command_line(),
        git_commit=commit,
        git_dirty=dirty,
        source_hash=provenance.source_hash(),
        versions=provenance.versions(),
        device=provenance.device_description(),
        hostname=provenance.hostname(),
        started_at=started,
        finished_at=provenance.now(),
        **extra,
    )


# --- several seeds in one process (shortsci_bench.seedbatch) -----------------------------


def seed_config(cfg: DictConfig, seed: int) -> DictConfig:
    """The finalized config of one seed of a `seeds=[...]` run: the single run's config
    (`seeds` and `seed_batching` are not in the hash, so the config hash is the same)."""
    one = copy.deepcopy(cfg)
    with open_dict(one):
        one.seed = int(seed)
    return one


def run_seeds(cfg: DictConfig, overrides: Sequence[str] = ()) -> list[RunRecord]:
    """Train the seeds `cfg.seeds` of one arm; return the records written (skipped seeds
    have none). Each seed has its own lock, skip-if-done and record, as a single run; the
    seeds left to run train stacked in one process when the experiment batches (else, or
    for a seed with a single run's checkpoint to resume, one after another)."""
    from shortsci_bench import seedbatch

    quiet_known_noise()
    tier, why = config.finalize(cfg, overrides)
    threads = config.cpu_threads(cfg.get("threads", "auto"))
    torch.set_num_threads(threads)
    seeds = [int(s) for s in cfg.seeds]
    _say(
        f"{cfg.name} arm={cfg.arm} seeds={seeds}: tier `{tier}` ({why}); "
        f"expected runtime per seed {config.tier_info(cfg).get('runtime', 'not stated')}"
    )
    if cfg.get("variant"):
        _say(f"settings differ from tier `{tier}`: recorded as variant `{cfg.variant}`")
    jobs: dict[int, tuple[DictConfig, str, Path]] = {}
    locks: list[FileLock] = []
    try:
        for seed in seeds:
            one = seed_config(cfg, seed)
            chash = config.config_hash(one)
            run_dir = run_dir_for(one, chash)
            run_dir.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(run_dir / ".lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                _say(f"seed {seed}: another process is running it ({run_dir}); skipping")
                continue
            locks.append(lock)
            if not cfg.get("force", False) and done_record(one) is not None:
                _say(f"seed {seed}: already done: {run_dir / RECORD_NAME}")
                continue
            checkpoints.clean_stray_temps(run_dir)
            jobs[seed] = (one, chash, run_dir)
        # A seed whose single run left a checkpoint resumes from it, as a single run.
        alone = [s for s in jobs if (jobs[s][2] / "checkpoints" / CHECKPOINT).exists()]
        stacked = [s for s in jobs if s not in alone]
        problem = seedbatch.batching_problem(cfg)
        if len(stacked) < 2 or problem:
            if problem and len(stacked) > 1:
                _say(f"seeds not batched: {problem}; running them one after another")
            alone, stacked = list(jobs), []
        records = []
        if stacked:
            records += _train_batched(cfg, tier, {s: jobs[s] for s in stacked}, threads)
        for seed in alone:
            one, chash, run_dir = jobs[seed]
            _say(f"seed {seed}: {'resuming its single run' if seed in stacked else 'single run'}")
            records.append(_train(one, tier, chash, run_dir, threads))
        return records
    finally:
        for lock in locks:
            lock.release()


def _batch_dir(cfg: DictConfig, seeds: Sequence[int]) -> tuple[Path, str]:
    """The folder of a batch's checkpoint, and the hash its checkpoint must carry: the
    settings (equal for every seed) and the seeds."""
    settings = config.settings_hash(cfg)
    tier = f"{cfg.tier}~{cfg.variant}" if cfg.get("variant") else str(cfg.tier)
    name = f"batch-s{'-'.join(str(s) for s in seeds)}-{settings[:8]}"
    key = hashlib.sha256(f"{settings}:{list(seeds)}".encode()).hexdigest()[:16]
    return Path(cfg.runs_dir) / str(cfg.name) / str(cfg.arm) / tier / name, key


def _log_to(loggers: list, task, metrics: dict, **_: Any) -> None:
    """A seed's `log_dict` in a batched run: straight to its own loggers."""
    for logger in loggers:
        logger.log_metrics(dict(metrics), step=task.global_step)


def _train_batched(
    cfg: DictConfig, tier: str, jobs: dict[int, tuple[DictConfig, str, Path]], threads: int
) -> list[RunRecord]:
    from shortsci_bench import seedbatch

    t0 = time.perf_counter()
    started = provenance.now()
    seeds = sorted(jobs)
    batch_dir, key = _batch_dir(cfg, seeds)
    ckpt_dir = batch_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    checkpoints.clean_stray_temps(batch_dir)
    ckpt = ckpt_dir / CHECKPOINT
    if cfg.get("force", False) and ckpt.exists() and all(done_record(j[0]) for j in jobs.values()):
        ckpt.unlink()  # every seed finished: forced, they run again from scratch
        checkpoints.sidecar(ckpt).unlink(missing_ok=True)
    if ckpt.exists() and (why := checkpoints.problem(ckpt, key)):
        aside = checkpoints.move_aside(ckpt)
        _say(f"checkpoint {ckpt} not resumed: {why}; moved aside to {aside.name}")
    resume = ckpt if ckpt.exists() else None
    if resume:
        _say(f"resuming seeds {seeds} from {resume}")

    tasks, datamodules, rngs, attempts, loggers = [], [], [], {}, {}
    on_gpu = str(cfg.trainer.get("accelerator")) in ("gpu", "cuda") or (
        str(cfg.trainer.get("accelerator")) == "auto" and torch.cuda.is_available()
    )
    for seed in seeds:
        one, chash, run_dir = jobs[seed]
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(one, resolve=True))
        attempts[seed] = _attempts(run_dir, resumed=resume is not None)
        # exactly the single run's order: seed, datamodule, task (the initialisation)
        L.seed_everything(seed, workers=True, verbose=False)
        datamodules.append(instantiate(one.dataset))
        task = build_task(one)
        rngs.append(seedbatch.SeedRNG(cuda=on_gpu))  # where the single run's training starts
        loggers[seed] = _loggers(one, run_dir, attempts[seed][-1])
        tasks.append(task)
    problem = seedbatch.batching_problem(cfg, tasks[0])
    if problem:  # known only once the task is built: run the seeds one after another
        _say(f"seeds not batched: {problem}; running them one after another")
        return [_train(jobs[s][0], tier, jobs[s][1], jobs[s][2], threads) for s in seeds]
    _say(f"seeds {seeds} batched in one process (stacked parameters, one step for all)")

    how_step = "vmap" if cfg.get("seed_batching") == "vmap" else "auto"
    ensemble = seedbatch.SeedBatchTask(tasks, seeds, rngs, how=how_step)
    for seed, task in zip(seeds, tasks):  # after the ensemble copies a task as its template
        task.log_dict = functools.partial(_log_to, loggers[seed], task)
    data = seedbatch.SeedBatchData(datamodules)
    # each seed logs to its own run folder, not the trainer
    trainer, stopper = _trainer(cfg, ckpt, key, False, batch_dir)

    def fit() -> None:
        trainer.fit(ensemble, datamodule=data, ckpt_path=str(resume) if resume else None)

    status, error = _guarded(trainer, stopper, fit, "batched run failed")

    records = []
    how = {
        "seeds": seeds,
        "size": len(seeds),
        # stacked_losses: the task's batched matrix products; vmap: torch.func.vmap
        "step": ensemble.used or None,
        "checkpoint": str(ckpt),
    }
    for i, seed in enumerate(seeds):
        one, chash, run_dir = jobs[seed]
        task = tasks[i]
        seed_status, seed_error = status, error
        if status == "completed" and task.diverged:
            seed_status = "diverged"
            seed_error = task.diverged_why or "diverged: non-finite loss"
            _say(f"seed {seed} diverged: {seed_error}")
        for logger in loggers[seed]:
            logger.save()
            logger.finalize("success" if seed_status == "completed" else seed_status)
        records.append(
            _write_record(
                one,
                tier,
                chash,
                run_dir,
                threads,
                task,
                datamodules[i],
                trainer,
                seed_status,
                seed_error,
                t0=t0,
                started=started,
                resume=resume,
                attempts=attempts[seed],
                seed_batch=how,
            )  # fmt: skip
        )
    return records
