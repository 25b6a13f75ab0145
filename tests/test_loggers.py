"""Loggers: CSV always; wandb offline (never the network) with the experiment's project and tags."""

from __future__ import annotations

import pytest

from tests.conftest import needs_mnist, run_cfg


@needs_mnist
def test_csv_log_is_written(tmp_path):
    run_cfg(["+experiment=batchnorm_mnist", "tier=smoke"], tmp_path)
    [csv] = list(tmp_path.rglob("logs/attempt-1/metrics.csv"))
    header = csv.read_text().splitlines()[0]
    assert "test/acc" in header and "step" in header


@needs_mnist
def test_wandb_runs_offline_with_project_group_and_tags(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    wandb.teardown()  # another test's disabled session would otherwise keep its settings
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    rec = run_cfg(
        ["+experiment=batchnorm_mnist", "tier=smoke", "logger=wandb", "arm=plain", "seed=3"],
        tmp_path,
    )
    assert rec.status == "completed"
    [offline] = list(tmp_path.rglob("offline-run-*"))
    assert offline.is_dir()
    cfg = rec.provenance.config["logger"]["wandb"]
    assert cfg["project"] == "shortsci-batchnorm_mnist" and cfg["group"] == "plain"
    assert "tier:smoke" in cfg["tags"] and "seed:3" in cfg["tags"] and cfg["offline"] is True
