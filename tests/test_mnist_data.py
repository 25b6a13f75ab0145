"""MNIST datamodule on small files in the real idx format; the batch stream; missing data."""

from __future__ import annotations

import time

import pytest
import torch

from shortsci_bench.data.batches import TrainStream
from shortsci_bench.data.errors import DatasetMissingError
from shortsci_bench.data.mnist import MNISTDataModule, load_mnist


def test_reads_real_idx_format(tiny_mnist):
    dm = MNISTDataModule(root=str(tiny_mnist), mirror=None, download=False, batch_size=20, steps=5)
    dm.setup("fit")
    x, y = dm.train
    assert x.shape == (200, 784) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y.shape == (200,) and y.dtype == torch.int64
    assert dm.test[0].shape == (100, 784)
    batches = list(dm.train_dataloader())
    assert len(batches) == 5 and batches[0][0].shape == (20, 784)


def test_stream_is_a_function_of_the_step():
    x = torch.arange(100).float().unsqueeze(1)
    s = TrainStream((x, x.squeeze(1).long()), batch_size=10, steps=25, seed=3)
    full = [b[1].tolist() for b in s]
    # each pass is a permutation: no example repeats within a pass
    first_pass = sum(full[:10], [])
    assert sorted(first_pass) == list(range(100))
    assert sum(full[10:20], []) != first_pass  # the next pass is shuffled anew
    resumed = TrainStream((x, x.squeeze(1).long()), 10, 25, seed=3, start_step=lambda: 13)
    assert [b[1].tolist() for b in resumed] == full[13:]
    other_seed = TrainStream((x, x.squeeze(1).long()), 10, 25, seed=4)
    assert [b[1].tolist() for b in other_seed] != full


def test_missing_data_fails_fast_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("SHORTSCI_MIRROR", str(tmp_path / "no-mirror"))
    # no network either: the probe must give up quickly, whatever this machine has
    monkeypatch.setattr("shortsci_bench.data.mnist.host_reachable", lambda host: False)
    t0 = time.perf_counter()
    with pytest.raises(DatasetMissingError) as err:
        load_mnist(tmp_path / "data", mirror=None, download=True)
    assert time.perf_counter() - t0 < 2.0
    msg = str(err.value)
    assert "MNIST" in msg and str(tmp_path / "data") in msg
    assert "dataset.mirror" in msg and "download" in msg


def test_host_probe_gives_up_within_its_timeout():
    from shortsci_bench.data.errors import host_reachable

    t0 = time.perf_counter()
    host_reachable("nonexistent.invalid", timeout=0.5)
    assert time.perf_counter() - t0 < 1.5
