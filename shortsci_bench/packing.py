"""How many jobs to pack on one machine (`hydra/launcher=packed`, issue 15).

Small models leave a GPU idle; several runs at once fill it. The number of jobs is the
smaller of (free GPU memory x 0.9) / `job_memory_gb` and the cores / `cpus_per_job`, so the
jobs never ask for more memory than is free when the sweep starts; on a machine without a
GPU it is the cores / `cpus_per_job`. The free memory is read with `nvidia-smi`, not torch:
a CUDA context in the launching process would hold memory for the whole sweep.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys


def cores() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    from shortsci_bench.config import _cgroup_cpu_quota

    quota = _cgroup_cpu_quota()
    return max(1, min(n, int(quota))) if quota is not None else n


def gpu_memory_gib() -> list[tuple[float, float]]:
    """(free, total) GiB of each GPU this process may see; [] without nvidia-smi or a GPU."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,memory.free,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [[float(x) for x in line.split(",")] for line in out.strip().splitlines() if line]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        keep = {int(v) for v in visible.split(",") if v.strip().isdigit()}
        rows = [r for r in rows if int(r[0]) in keep]
    return [(free / 1024, total / 1024) for _, free, total in rows]


def plan(job_memory_gb: float = 2.0, cpus_per_job: int = 1) -> tuple[int, str]:
    """(jobs, a sentence saying why) for one device: the first visible GPU, else the CPU."""
    n_cores = cores()
    by_cpu = max(1, n_cores // max(1, int(cpus_per_job)))
    gpus = gpu_memory_gib()
    if not gpus:
        return by_cpu, f"no GPU: {by_cpu} job(s), {n_cores} cores / {cpus_per_job} per job"
    free, total = gpus[0]
    by_mem = int(free * 0.9 // float(job_memory_gb))
    if by_mem < 1:
        return 1, f"GPU has {free:.1f} GiB free, under {job_memory_gb} GiB per job: 1 job"
    jobs = min(by_mem, by_cpu)
    return jobs, (
        f"{jobs} job(s) on one GPU: {free:.1f} of {total:.1f} GiB free x 0.9 / "
        f"{job_memory_gb} GiB per job = {by_mem}; {n_cores} cores / {cpus_per_job} per job = {by_cpu}"
    )


@functools.cache
def pack_jobs(job_memory_gb: float = 2.0, cpus_per_job: int = 1) -> int:
    """The `${pack_jobs:GB,CPUS}` resolver: the number of jobs, said once on stderr."""
    jobs, why = plan(float(job_memory_gb), int(cpus_per_job))
    print(f"[shortsci] packing: {why}", file=sys.stderr, flush=True)
    return jobs
