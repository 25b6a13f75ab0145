"""End to end: the real configs, a smoke run, its record, skipping, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from shortsci_bench.runs.record import read_record
from tests.conftest import REPO, needs_mnist, run_cfg

SMOKE = ["+experiment=batchnorm_mnist", "tier=smoke"]


def _science(metrics: dict) -> dict:
    """Metrics that must repeat exactly (time/* are measurements of the machine)."""
    return {k: v for k, v in metrics.items() if not k.startswith("time/")}


@needs_mnist
def test_smoke_run_writes_a_complete_record(tmp_path):
    rec = run_cfg([*SMOKE, "arm=bn"], tmp_path)
    assert rec is not None and rec.status == "completed"
    [path] = list(tmp_path.rglob("result.json"))
    assert path.parent.relative_to(tmp_path).parts[:3] == ("batchnorm_mnist", "bn", "smoke")
    assert path.parent.name.startswith("seed0-") and rec.config_hash[:8] in path.parent.name
    on_disk = read_record(path)
    assert on_disk.model_dump() == rec.model_dump()
    for key in (
        "test/acc",
        "test/acc_mean",
        "probe/p15",
        "probe/p50",
        "probe/p85",
        "probe/p50_drift",
    ):
        assert key in rec.metrics
    assert 0.0 <= rec.metrics["test/acc"] <= 1.0
    assert rec.metrics["probe/p15"] <= rec.metrics["probe/p50"] <= rec.metrics["probe/p85"]
    assert [h["step"] for h in rec.history] == [20.0, 40.0]
    prov = rec.provenance
    assert prov.config["model"]["batchnorm"] is True and prov.config["tier"] == "smoke"
    assert prov.versions["torch"] and prov.versions["lightning"] and prov.versions["python"]
    assert prov.device.startswith(("cpu", "cuda"))
    assert prov.data["dataset"] == "mnist" and prov.data["n_eval"] == 1000
    assert prov.git_commit is None or len(prov.git_commit) == 40
    assert rec.wall_time_s > 0 and rec.notes
    assert (path.parent / "config.yaml").exists() and (
        path.parent / "checkpoints" / "last.ckpt"
    ).exists()


@needs_mnist
def test_identical_run_is_skipped_unless_forced(tmp_path, capsys):
    first = run_cfg([*SMOKE, "arm=plain"], tmp_path)
    assert first is not None
    mtime = next(tmp_path.rglob("result.json")).stat().st_mtime_ns
    assert run_cfg([*SMOKE, "arm=plain"], tmp_path) is None
    assert "already done" in capsys.readouterr().out
    assert next(tmp_path.rglob("result.json")).stat().st_mtime_ns == mtime
    again = run_cfg([*SMOKE, "arm=plain", "force=true"], tmp_path)
    assert again is not None and _science(again.metrics) == _science(
        first.metrics
    )  # and deterministic


@needs_mnist
def test_arms_differ(tmp_path):
    bn = run_cfg([*SMOKE, "arm=bn"], tmp_path)
    plain = run_cfg([*SMOKE, "arm=plain"], tmp_path)
    assert bn.config_hash != plain.config_hash
    assert bn.metrics["test/acc"] != plain.metrics["test/acc"]
    assert len(list(tmp_path.rglob("result.json"))) == 2


@needs_mnist
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    reference = run_cfg([*SMOKE, "arm=bn"], tmp_path / "ref")
    runs = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "shortsci_bench",
        *SMOKE,
        "arm=bn",
        "threads=1",
        f"runs_dir={runs}",
    ]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    killed = subprocess.run(
        [*cmd, "debug.kill_at_step=30"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert not list(runs.rglob("result.json"))  # no record from a dead run
    assert list(runs.rglob("last.ckpt"))  # but a checkpoint from its evaluation at step 20
    resumed = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from" in resumed.stdout
    rec = json.loads(next(runs.rglob("result.json")).read_text())
    assert rec["status"] == "completed" and rec["provenance"]["resumed_from"]
    assert _science(rec["metrics"]) == _science(reference.metrics)
    assert rec["history"] == [h for h in reference.model_dump()["history"]]


def test_missing_dataset_exits_fast_with_a_message(tmp_path):
    env = {**os.environ, "SHORTSCI_MIRROR": str(tmp_path / "none"), "WANDB_MODE": "disabled"}
    cmd = [
        sys.executable,
        "-m",
        "shortsci_bench",
        *SMOKE,
        f"runs_dir={tmp_path}/runs",
        f"dataset.root={tmp_path}/empty",
        "dataset.download=false",
    ]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "MNIST is not available" in out.stderr and "dataset.mirror" in out.stderr
    assert "Traceback" not in out.stderr


def test_unknown_experiment_arm_is_a_clear_error(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "shortsci_bench", *SMOKE, "arm=huge", f"runs_dir={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "arm 'huge'" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("missing", [[]])
def test_no_experiment_chosen(tmp_path, missing):
    out = subprocess.run(
        [sys.executable, "-m", "shortsci_bench", f"runs_dir={tmp_path}", *missing],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "+experiment=NAME" in out.stderr


@needs_mnist
def test_an_overridden_run_is_recorded_as_a_variant(tmp_path):
    from shortsci_bench.runs.record import read_record

    record = run_cfg(["+experiment=batchnorm_mnist", "tier=smoke", "trainer.max_steps=6"], tmp_path)
    assert record.tier == "smoke" and record.variant and record.variant.startswith("custom-")
    path = next(tmp_path.rglob("result.json"))
    assert f"smoke~{record.variant}" in str(path)
    assert read_record(path).settings_hash == record.settings_hash
    assert record.provenance.source_hash
