"""Sweeps and scale-out through Hydra's real launchers and Lightning's DDP (smoke tier)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, needs_mnist

pytestmark = [needs_mnist, pytest.mark.slow]
ENV = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
BASE = [
    sys.executable,
    "-m",
    "shortsci_bench",
    "+experiment=batchnorm_mnist",
    "tier=smoke",
    "threads=1",
]


def _records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("result.json"))]


def _run(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    out = subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def test_joblib_sweep_runs_every_job_and_a_rerun_repeats_none(tmp_path):
    cmd = [
        *BASE[:3],
        "-m",
        *BASE[3:],
        "arm=bn,plain",
        "seed=0,1",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"runs_dir={tmp_path}",
    ]
    _run(cmd)
    recs = _records(tmp_path)
    assert sorted((r["arm"], r["seed"]) for r in recs) == [
        ("bn", 0),
        ("bn", 1),
        ("plain", 0),
        ("plain", 1),
    ]
    assert all(r["status"] == "completed" for r in recs)
    mtimes = sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("result.json"))
    again = _run(cmd)
    assert again.stdout.count("already done") == 4
    assert sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("result.json")) == mtimes


def test_claims_sweep_preset_killed_midway_loses_nothing(tmp_path):
    cmd = [*BASE[:3], "-m", *BASE[3:], "+sweep=claims", "seed=0,1", f"runs_dir={tmp_path}"]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not list(tmp_path.rglob("result.json")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep dies with its first job finished
    proc.wait()
    finished = {p.parent for p in tmp_path.rglob("result.json")}
    assert 1 <= len(finished) < 4
    out = _run(cmd)
    assert out.stdout.count("already done") == len(finished)
    recs = _records(tmp_path)
    assert sorted((r["arm"], r["seed"]) for r in recs) == [
        ("bn", 0),
        ("bn", 1),
        ("plain", 0),
        ("plain", 1),
    ]


def test_submitit_local_runs_a_job(tmp_path):
    _run(
        [
            *BASE[:3],
            "-m",
            *BASE[3:],
            "arm=plain",
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=10",
            f"runs_dir={tmp_path}",
        ]
    )
    [rec] = _records(tmp_path)
    assert rec["status"] == "completed" and rec["arm"] == "plain"


def test_optuna_sweeper_runs_trials_and_resumes_its_study(tmp_path):
    import optuna

    cmd = [*BASE[:3], "-m", *BASE[3:], "+hparams_search=batchnorm_optuna", f"runs_dir={tmp_path}"]
    _run([*cmd, "hydra.sweeper.n_trials=2"])
    [db] = list(tmp_path.glob("optuna-*.db"))
    study = optuna.load_study(study_name="batchnorm_mnist-bn-smoke", storage=f"sqlite:///{db}")
    assert len(study.trials) == 2 and all(t.value is not None for t in study.trials)
    _run([*cmd, "hydra.sweeper.n_trials=1"])
    study = optuna.load_study(study_name="batchnorm_mnist-bn-smoke", storage=f"sqlite:///{db}")
    assert len(study.trials) == 3  # the study resumed from its storage
    values = {round(r["metrics"]["test/acc_mean"], 9) for r in _records(tmp_path)}
    assert {round(t.value, 9) for t in study.trials} <= values


def test_ddp_two_cpu_processes_write_one_record(tmp_path):
    out = _run(
        [
            *BASE,
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            f"runs_dir={tmp_path}",
        ]
    )
    [rec] = _records(tmp_path)
    assert rec["status"] == "completed"
    assert rec["provenance"]["config"]["trainer"]["strategy"] == "ddp"
    assert out.stdout.count("completed:") == 1  # written once, by rank zero
    assert 0.0 < rec["metrics"]["test/acc"] <= 1.0


def test_a_failed_job_does_not_stop_the_sweep_and_the_summary_names_it(tmp_path):
    args = [*BASE[:3], "-m", *BASE[3:], "model.init_std=-1,0.1", "trainer.max_steps=20"]
    args.append(f"runs_dir={tmp_path}")
    out = subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert "sweep: 2 jobs in " in out.stdout and ": 1 completed, 1 failed" in out.stdout
    assert "failed: " in out.stdout and "model.init_std=-1" in out.stdout
    statuses = sorted(r["status"] for r in _records(tmp_path))
    assert statuses == ["completed", "failed"]  # the failed run has its record too
    again = subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert ": 2 skipped" in again.stdout  # both are final: neither runs again
