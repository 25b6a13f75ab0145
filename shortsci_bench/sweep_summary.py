"""The end of a sweep: what ran, what was skipped, what failed, and how long it took.

Each job of a multirun writes `shortsci_job.json` into its Hydra job folder (status,
record path, seconds); `SweepSummary`, a Hydra callback registered in conf/config.yaml,
reads them all when the sweep ends and prints one line per kind plus the failed jobs.
It works for every launcher (joblib workers and SLURM jobs write the same files). A
failed run does not stop a sweep (its record says why); the sweep then exits 1.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

JOB_FILE = "shortsci_job.json"
KINDS = ("completed", "skipped", "diverged", "failed", "interrupted")


def note_job(
    output_dir: str | Path, status: str, record: str | None, seconds: float, job: str
) -> None:
    """Write this job's line of the summary (called by the job itself)."""
    path = Path(output_dir) / JOB_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"status": status, "record": record, "seconds": seconds, "job": job}) + "\n"
    )


def summarize(sweep_dir: str | Path, seconds: float | None = None) -> tuple[str, int]:
    """The summary text of the sweep in `sweep_dir`, and its exit status (1 if any failed)."""
    jobs: list[dict[str, Any]] = []
    for path in sorted(Path(sweep_dir).glob(f"*/{JOB_FILE}")):
        try:
            jobs.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            jobs.append({"status": "failed", "job": path.parent.name, "record": None})
    counts = {k: 0 for k in KINDS}
    for job in jobs:
        counts[job.get("status", "failed")] = counts.get(job.get("status", "failed"), 0) + 1
    took = f" in {seconds:.0f} s" if seconds is not None else ""
    parts = ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no job reported"
    lines = [f"[shortsci] sweep: {len(jobs)} jobs{took}: {parts}"]
    for job in jobs:
        if job.get("status") in ("failed", "diverged", "interrupted"):
            lines.append(
                f"  {job['status']}: {job.get('job')} -> {job.get('record') or 'no record'}"
            )
    if counts["skipped"]:
        lines.append(
            "  skipped: their records were final before this sweep (force=true reruns them)"
        )
    return "\n".join(lines), 1 if counts["failed"] else 0


class SweepSummary(Callback):
    """Hydra callback: prints `summarize` when a multirun ends."""

    def __init__(self) -> None:
        self.t0: float | None = None

    def on_multirun_start(self, config, **kwargs: Any) -> None:
        self.t0 = time.perf_counter()

    def on_job_end(self, config, job_return, **kwargs: Any) -> None:
        # A job that raised never wrote its line: say so (it did not run to a record).
        from hydra.core.hydra_config import HydraConfig
        from hydra.core.utils import JobStatus
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode != RunMode.MULTIRUN or job_return.status != JobStatus.FAILED:
            return
        out = Path(hc.runtime.output_dir)
        if not (out / JOB_FILE).exists():
            note_job(out, "failed", None, 0.0, " ".join(hc.overrides.task))

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        seconds = time.perf_counter() - self.t0 if self.t0 is not None else None
        text, status = summarize(config.hydra.sweep.dir, seconds)
        print(text, flush=True)
        if status:
            sys.exit(status)


__all__ = ["SweepSummary", "note_job", "summarize"]
