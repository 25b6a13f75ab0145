"""`python -m shortsci_bench +experiment=NAME [tier=smoke|quick|paper] [seed=N] [arm=ARM]`."""

from __future__ import annotations

import os
import sys
import time

from shortsci_bench.threads import blas_threads_from_argv

blas_threads_from_argv(sys.argv, os.environ)  # before anything imports numpy

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from shortsci_bench.config import ConfigError, register_resolvers  # noqa: E402
from shortsci_bench.data.errors import DataCorruptError, DatasetMissingError  # noqa: E402
from shortsci_bench.data.verify import check_before_imports  # noqa: E402
from shortsci_bench.registry import RegistryError  # noqa: E402
from shortsci_bench.validate import check_values, unknown_keys  # noqa: E402

register_resolvers()
# Exit status of a run stopped by a signal after saving its checkpoint: non-zero, so a
# scheduler does not read a preempted or timed-out job as a success.
EXIT_INTERRUPTED = 3


def _stop_sweep_here() -> None:
    """In a sweep, say which jobs will not run: the exit that follows ends the sweep."""
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return
    num = int(hydra_cfg.job.num)
    # Only the basic launcher runs jobs one after another in this process; elsewhere
    # (joblib, submitit) the other jobs run on their own and only this one stopped.
    in_order = str(hydra_cfg.launcher.get("_target_", "")).endswith("BasicLauncher")
    left = _sweep_jobs(hydra_cfg)[num + 1 :] if in_order else []
    print(
        f"[shortsci] sweep stopped at job #{num}; {len(left)} job(s) not run"
        + "".join(f"\n  #{num + 1 + i}: {' '.join(job)}" for i, job in enumerate(left))
        + "\n[shortsci] run the same command again: finished jobs are skipped, "
        "the interrupted one resumes",
        file=sys.stderr,
    )


def _note_job(cfg: DictConfig, record, seconds: float, status: str | None = None) -> None:
    """In a sweep, this job's line of the end-of-sweep summary (shortsci_bench.sweep_summary);
    `status` for a job of several seeds (`seeds=`), whose records are each in their folder."""
    if not _in_sweep():
        return
    from shortsci_bench import config
    from shortsci_bench.run import RECORD_NAME, run_dir_for
    from shortsci_bench.sweep_summary import note_job

    hc = HydraConfig.get()
    if status is None:
        status = "skipped" if record is None else record.status
        where = str(run_dir_for(cfg, config.config_hash(cfg)) / RECORD_NAME)
    else:
        where = f"{cfg.runs_dir}/{cfg.name}/{cfg.arm}/ (seeds {list(cfg.seeds)})"
    note_job(hc.runtime.output_dir, status, where, seconds, " ".join(hc.overrides.task))


def _in_sweep() -> bool:
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


def _sweep_jobs(hydra_cfg) -> list[list[str]]:
    """The sweep's jobs in launch order, as Hydra's basic sweeper expands them
    (its `params` first, then the command line)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = hydra_cfg.sweeper.get("params") or {}
    args = [f"{k}={v}" for k, v in params.items()]
    args += [a for a in sys.argv[1:] if not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(args)
        return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    except Exception:  # another sweeper's syntax: the count is unknown, the advice holds
        return []


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Run one job; return `optimized_metric` of its record, for sweepers such as Optuna."""
    overrides = list(HydraConfig.get().overrides.task)
    if any(o.split("=", 1)[0].lstrip("+") == "scale" for o in overrides):
        print("[shortsci] note: `scale=` is now `tier=` (scale= still works)", file=sys.stderr)
    try:
        check_values(cfg)  # before torch and Lightning are imported: a bad value costs < 1 s
        check_before_imports(cfg.get("dataset"))  # and so does a damaged data file
        from shortsci_bench.run import completed_record, run, run_seeds

        t0 = time.perf_counter()
        if cfg.get("seeds") is not None:  # several seeds in one process
            records = run_seeds(cfg, overrides)
            statuses = {r.status for r in records}
            worst = next(
                (k for k in ("failed", "interrupted", "diverged", "completed") if k in statuses),
                "skipped",
            )
            _note_job(cfg, None, time.perf_counter() - t0, status=worst)
            if "failed" in statuses and not _in_sweep():
                sys.exit(1)
            if "interrupted" in statuses:
                _stop_sweep_here()
                sys.exit(EXIT_INTERRUPTED)
            return None
        record = run(cfg, overrides)
        _note_job(cfg, record, time.perf_counter() - t0)
    except (ConfigError, DatasetMissingError, DataCorruptError, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:  # a one-line message; the traceback on request
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or _in_sweep():
            raise  # in a sweep, Hydra's launcher reports the job (an Optuna trial fails)
        print(
            f"error: {type(exc).__name__}: {exc} (HYDRA_FULL_ERROR=1 shows the traceback)",
            file=sys.stderr,
        )
        sys.exit(1)
    if record is not None and record.status == "failed" and not _in_sweep():
        sys.exit(1)  # in a sweep the others go on; the summary at its end exits 1
    if record is not None and record.status == "interrupted":
        _stop_sweep_here()
        sys.exit(EXIT_INTERRUPTED)
    metric = cfg.get("optimized_metric")
    if metric:
        record = record or completed_record(cfg)
        if record is None or metric not in record.metrics:
            raise ConfigError(f"optimized_metric {metric!r} is not among this run's metrics")
        value = record.metrics[metric]
        return float("nan") if value is None else float(value)  # None: it was not finite
    return None


def seeds_as_list(argv: list[str]) -> list[str]:
    """`seeds=0,1,2` means one process for the three seeds, not a sweep over them: Hydra
    reads a bare comma list as a sweep, so it is passed on as the list `seeds=[0,1,2]`."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and key.lstrip("+") == "seeds" and not value.startswith("["):
            arg = f"{key}=[{value}]"
        out.append(arg)
    return out


def cli() -> None:
    """`python -m shortsci_bench`: unknown keys are caught before Hydra composes the run."""
    sys.argv[1:] = seeds_as_list(sys.argv[1:])
    problem = unknown_keys(sys.argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
