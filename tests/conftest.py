"""Shared fixtures: compose the real configs (shrunk), run them in-process, tiny real-format data."""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from shortsci_bench import config
from shortsci_bench.config import register_resolvers

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
os.environ.setdefault("WANDB_MODE", "disabled")


def compose_cfg(
    overrides: list[str],
    runs_dir: Path | None = None,
    finalize: bool = True,
    gpu_available: bool | None = False,
) -> DictConfig:
    """The config `python -m shortsci_bench <overrides>` would run (threads pinned to 1):
    composed by Hydra, then finalized (tier resolved, tier and arm overlays applied)."""
    register_resolvers()
    overrides = ["threads=1", *overrides]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    if finalize and cfg.get("name"):
        config.finalize(cfg, overrides, gpu_available=gpu_available)
    if runs_dir is not None:
        with open_dict(cfg):
            cfg.runs_dir = str(runs_dir)
    return cfg


def run_cfg(overrides: list[str], runs_dir: Path):
    """Run in-process and return the RunRecord (None when skipped)."""
    from shortsci_bench.run import run

    return run(compose_cfg(overrides, runs_dir))


def killed_then_resumed(overrides: list[str], runs_dir: Path, kill_at: int) -> dict:
    """Run `python -m shortsci_bench <overrides>` killed by SIGKILL after step `kill_at`,
    then the same command again, which must resume; the resumed run's record (as JSON)."""
    cmd = [sys.executable, "-m", "shortsci_bench", *overrides, "threads=1", f"runs_dir={runs_dir}"]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    killed = subprocess.run(
        [*cmd, f"debug.kill_at_step={kill_at}"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert killed.returncode == -9, killed.stdout + killed.stderr
    resumed = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0 and "resuming from" in resumed.stdout, (
        resumed.stdout + resumed.stderr
    )
    return json.loads(next(runs_dir.rglob("result.json")).read_text())


def assert_resumes_exactly(overrides: list[str], tmp_path: Path, kill_at: int) -> None:
    """A run killed by SIGKILL after step `kill_at` and run again ends with the record of an
    uninterrupted run: the same metrics (timings aside) and the same history."""
    reference = run_cfg(overrides, tmp_path / "ref")
    rec = killed_then_resumed(overrides, tmp_path / "killed", kill_at)
    assert science(rec["metrics"]) == science(reference.metrics)
    assert rec["history"] == reference.model_dump()["history"]


def science(metrics: dict) -> dict:
    """A record's metrics without the timings, which differ between two runs."""
    return {k: v for k, v in metrics.items() if not k.startswith("time/")}


def mnist_available() -> bool:
    from shortsci_bench.data import mirror

    root = Path(os.environ.get("SHORTSCI_DATA", REPO / "data"))
    return (
        root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    ).exists() or mirror.default_mirror() is not None


needs_mnist = pytest.mark.skipif(
    not mnist_available(), reason="MNIST not unpacked and no mirror (run `make data`)"
)


def write_idx_mnist(raw: Path, n_train: int = 200, n_test: int = 100, seed: int = 0) -> None:
    """Write small files in the real MNIST idx format (big-endian magic, dims, uint8 data)."""
    rng = np.random.default_rng(seed)
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        images = (rng.random((n, 28, 28)) * 255).astype(np.uint8)
        images[np.arange(n), labels, :] = 255  # a learnable signal: row = label
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes()
        )
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, n) + labels.tobytes()
        )


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_idx_mnist(root / "MNIST" / "raw")
    return root


def gzip_file(src: Path, dst: Path) -> None:
    with open(src, "rb") as fi, gzip.open(dst, "wb") as fo:
        fo.write(fi.read())
