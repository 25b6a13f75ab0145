"""Density-estimation data (shortsci_bench/data/density.py): the pinned binarization, the
50k/10k/10k split, and the manifest check that refuses a changed binarization."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shortsci_bench.data import density
from tests.conftest import needs_mnist


def test_binarization_is_bernoulli_of_the_grey_level_and_seeded():
    grey = np.tile(np.arange(256, dtype=np.uint8), (2000, 1))  # each level 2,000 times
    bits = density.binarize(grey)
    assert set(np.unique(bits)) == {0, 1}
    assert (bits[:, 0] == 0).all() and (bits[:, 255] == 1).all()  # p = 0 and p = 1 exactly
    rate = bits.mean(0)
    # the frequency of ones at level v is v / 255 within 5 binomial standard errors
    p = np.arange(256) / 255
    assert (np.abs(rate - p) <= 5 * np.sqrt(p * (1 - p) / 2000) + 1e-12).all()
    assert np.array_equal(bits, density.binarize(grey))  # pinned seed: the same bits
    assert not np.array_equal(bits, density.binarize(grey, seed=1))


def test_split_is_first_50k_last_10k_and_test():
    train = np.arange(60_000)[:, None]
    test = np.arange(10_000)[:, None] + 100_000
    s = density.split_mnist(train, test)
    assert len(s["train"]) == 50_000 and s["train"][-1, 0] == 49_999
    assert len(s["valid"]) == 10_000 and s["valid"][0, 0] == 50_000
    assert s["test"][0, 0] == 100_000


def test_manifest_refuses_changed_bits_for_the_pinned_source(tmp_path, monkeypatch):
    src = {"MNIST/raw/train-images-idx3-ubyte": "aa", "MNIST/raw/t10k-images-idx3-ubyte": "bb"}
    splits = {"train": np.zeros((3, 4), np.uint8), "valid": np.ones((2, 4), np.uint8)}
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(density.manifest_entry(src, splits)))
    monkeypatch.setattr(density, "MANIFEST", manifest)
    assert density.check_binarization(src, splits)["pinned"] is True
    other_source = {**src, "MNIST/raw/train-images-idx3-ubyte": "cc"}
    assert density.check_binarization(other_source, splits)["pinned"] is False
    changed = {**splits, "valid": np.zeros((2, 4), np.uint8)}
    with pytest.raises(RuntimeError, match="generator changed"):
        density.check_binarization(src, changed)


def test_tiny_fake_mnist_loads_unpinned(tiny_mnist):
    dm = density.DensityMNISTDataModule(root=str(tiny_mnist), download=False, batch_size=8,
                                        steps=3, train_subset=None)  # fmt: skip
    dm.setup()
    assert dm.info["binarization"]["pinned"] is False  # not the real MNIST files
    (x,) = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 28, 28) and set(x.unique().tolist()) <= {0.0, 1.0}


@needs_mnist
def test_real_mnist_matches_the_pinned_manifest():
    import os

    dm = density.DensityMNISTDataModule(root=os.environ.get("SHORTSCI_DATA", "data"))
    dm.setup()
    b = dm.provenance()["binarization"]
    assert b["pinned"] is True and b["name"] == density.BINARIZATION
    assert dm.provenance()["n_train"] == 50_000 and dm.provenance()["n_test"] == 10_000
    dm_grey = density.DensityMNISTDataModule(root=os.environ.get("SHORTSCI_DATA", "data"),
                                             pixels="uint8")  # fmt: skip
    dm_grey.setup()
    assert dm_grey.splits["valid"].max() == 255 and "binarization" not in dm_grey.info
