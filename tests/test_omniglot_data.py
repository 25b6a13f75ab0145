"""Omniglot data: pinned splits, the mirror -> torchvision -> tensor path, the episode sampler."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from shortsci_bench.data import mirror as mirror_mod
from shortsci_bench.data import omniglot as O
from shortsci_bench.data.batches import GeneratedSteps
from shortsci_bench.data.episodes import (
    PINNED_SHA256,
    check_pinned,
    episode_batch,
    gather_sequences,
    index_sha256,
    mean_ci95,
    pinned_episodes,
    pinned_sequences,
)
from tests.omniglot_fake import (
    N_BACKGROUND,
    N_EVALUATION,
    ZIP_ALPHABET,
    fake_characters,
    register_tiny_split,
    write_fake_mirror,
)

REAL_MIRROR = mirror_mod.default_mirror()
needs_real_mirror = pytest.mark.skipif(
    REAL_MIRROR is None or not (REAL_MIRROR / "omniglot").is_dir(), reason="no Omniglot mirror"
)


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> tuple[Path, Path]:
    """(mirror, root) with the fake mirror unpacked and decoded at 28x28 once for the module."""
    base = tmp_path_factory.mktemp("omniglot")
    mirror = write_fake_mirror(base / "mirror")
    root = base / "data"
    O.omniglot_tensor(root, 28, mirror=mirror, download=False)
    return mirror, root


# --- splits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name,n_train,n_test", [("vinyals_1200", 1200, 423), ("lake", 964, 659)])
def test_split_manifests_are_pinned_and_disjoint(name, n_train, n_test):
    m = O.split_manifest(name)
    assert (len(m["train"]), len(m["test"])) == (n_train, n_test)
    assert not set(m["train"]) & set(m["test"])
    assert sorted(m["train"] + m["test"]) == list(range(1, 1624))
    assert m["sha256"] == O.SPLIT_SHA256[name]


def test_an_edited_split_is_refused(monkeypatch):
    monkeypatch.setitem(O.SPLITS, "lake", {**O.SPLITS["lake"], "train": [(1, 963)]})
    with pytest.raises(ValueError, match="pinned checksum"):
        O.split_manifest("lake")


# --- mirror -> torchvision layout -> tensors ----------------------------------------------------


def test_unpacked_folders_parse_with_stock_torchvision(fake):
    mirror, root = fake
    base = root / "omniglot-py" / "images_background"
    alphabet, first, count = ZIP_ALPHABET
    # the zip's alphabet keeps its real name; the rest are named for their first id
    assert sorted(p.name for p in (base / alphabet).iterdir()) == [
        f"character{k:02d}" for k in range(1, count + 1)
    ]
    assert (base / "alphabet_from_id_0001" / "character03" / "0003_20.png").exists()
    assert (
        root / "omniglot-py" / "images_evaluation" / f"alphabet_from_id_{N_BACKGROUND + 1:04d}"
    ).is_dir()
    bg = O.OmniglotFolders(str(root), background=True)  # stock parsing, md5 check relaxed
    ev = O.OmniglotFolders(str(root), background=False)
    assert (len(bg), len(ev)) == (N_BACKGROUND * 20, N_EVALUATION * 20)
    image, label = bg[0]
    assert image.size == (105, 105) and 0 <= label < N_BACKGROUND


def test_decoded_tensor_matches_the_npz(fake):
    mirror, root = fake
    x, info = O.omniglot_tensor(root, 28, mirror=mirror, download=False)
    assert info["cache_hit"] is True  # decoded once by the fixture, then read from the cache
    assert x.shape == (N_BACKGROUND + N_EVALUATION, 20, 28, 28) and x.dtype == torch.uint8
    # global id order: row 12 is the first evaluation character, from its own npz
    ink = torch.from_numpy(~fake_characters(N_EVALUATION, 1)[0, 3]).float()[None, None]
    expected = torch.nn.functional.interpolate(ink, size=(28, 28), mode="area")[0, 0]
    assert (x[N_BACKGROUND, 3].float() / 255 - expected).abs().mean() < 0.05
    assert not torch.equal(x[0, 0], x[1, 0])


def test_rotations_are_new_classes():
    x = torch.randint(0, 255, (3, 20, 28, 28), dtype=torch.uint8)
    r = O.with_rotations(x)
    assert r.shape == (12, 20, 28, 28)
    assert torch.equal(r[:3], x) and torch.equal(r[3 + 1], torch.rot90(x[1], 1, dims=(-2, -1)))
    assert torch.equal(r[9 + 2], torch.rot90(x[2], 3, dims=(-2, -1)))


def test_no_class_is_shared_between_train_and_test(fake, monkeypatch):
    mirror, root = fake
    register_tiny_split(monkeypatch)
    dm = O.OmniglotDataModule(
        root=str(root),
        mirror=str(mirror),
        download=False,
        split="tiny",
        eval_settings=["5w1s"],
        eval_episodes=20,
    )
    dm.setup()
    assert dm.n_train_classes == 14 * 4 and len(dm.test_images) == 6
    train = dm.train_images.reshape(dm.n_train_classes, -1).float()
    test = dm.test_images.reshape(6, -1).float()
    # no test drawing equals any training drawing, rotated or not
    same = (dm.train_images.flatten(1)[:, None] == dm.test_images.flatten(1)[None]).all(-1)
    assert not same.any() and train.shape[1] == test.shape[1]
    prov = dm.provenance()
    assert prov["split"] == "tiny" and len(prov["split_sha256"]) == 64
    assert set(prov["pinned_episodes_sha256"]) == {"5w1s"}


# --- the sampler -------------------------------------------------------------------------------


@pytest.mark.parametrize("way,shot,queries", [(5, 1, 5), (5, 5, 3), (20, 1, 1), (20, 5, 5)])
def test_episode_sizes_and_labels(way, shot, queries):
    images = (
        torch.arange(30 * 20, dtype=torch.int32)
        .reshape(30, 20, 1, 1)
        .expand(30, 20, 4, 4)
        .contiguous()
    )
    g = torch.Generator().manual_seed(0)
    b = episode_batch(images, way, shot, queries, 3, g)
    assert b["support"].shape == (3, way * shot, 1, 4, 4)
    assert b["query"].shape == (3, way * queries, 1, 4, 4)
    assert b["support_labels"][0].tolist() == [c for c in range(way) for _ in range(shot)]
    # the drawing's id tells its class (id // 20) and drawer (id % 20)
    ids = lambda t: (t[..., 0, 0, 0] * 255).round().long()  # noqa: E731  (ids < 600 survive /255 in float)
    sup, qry = ids(b["support"]), ids(b["query"])
    for e in range(3):
        classes_s = (sup[e] // 20).view(way, shot)
        classes_q = (qry[e] // 20).view(way, queries)
        assert (classes_s == classes_s[:, :1]).all() and (classes_q == classes_s[:, :1]).all()
        assert len(set(classes_s[:, 0].tolist())) == way  # distinct classes
        drawn = torch.cat([sup[e].view(way, shot), qry[e].view(way, queries)], 1)
        assert all(len(set(row.tolist())) == shot + queries for row in drawn)  # distinct drawers


def test_sampler_is_determined_by_the_seed():
    images = torch.randint(0, 255, (40, 20, 8, 8), dtype=torch.uint8)
    a = GeneratedSteps(lambda g: episode_batch(images, 5, 1, 2, 2, g), steps=6, seed=3)
    b = GeneratedSteps(lambda g: episode_batch(images, 5, 1, 2, 2, g), steps=6, seed=3)
    c = GeneratedSteps(lambda g: episode_batch(images, 5, 1, 2, 2, g), steps=6, seed=4)
    first = [x["query"] for x in a]
    assert all(torch.equal(x, y["query"]) for x, y in zip(first, b))
    assert not torch.equal(first[0], next(iter(c))["query"])
    assert not torch.equal(first[0], first[1])
    resumed = GeneratedSteps(a.build, steps=6, seed=3, start_step=lambda: 4)  # as after a restart
    assert torch.equal(next(iter(resumed))["query"], first[4])


def test_pinned_episode_list_is_fixed():
    index = pinned_episodes(423, 5, 1, 5, 1000)
    assert index["classes"].shape == (1000, 5) and index["drawers"].shape == (1000, 5, 6)
    assert int(index["classes"].max()) < 423
    assert index_sha256(index) == PINNED_SHA256[(423, "5w1s", 5, 1000)]
    assert index_sha256(pinned_episodes(423, 5, 1, 5, 1000)) == index_sha256(index)
    other = pinned_episodes(423, 20, 1, 5, 1000)
    assert check_pinned(423, "20w1s", 5, other) == PINNED_SHA256[(423, "20w1s", 5, 1000)]
    with pytest.raises(RuntimeError, match="generator changed"):
        check_pinned(423, "5w1s", 5, pinned_episodes(423, 5, 1, 5, 1000, seed=1))


def test_label_streams_show_each_class_instances_times():
    images = (
        torch.arange(30 * 20, dtype=torch.int32)
        .reshape(30, 20, 1, 1)
        .expand(30, 20, 2, 2)
        .contiguous()
    )
    index = pinned_sequences(30, 5, 10, 7)
    assert index_sha256(index) == index_sha256(pinned_sequences(30, 5, 10, 7))
    x, y = gather_sequences(images, index)
    assert x.shape == (7, 50, 2, 2) and y.shape == (7, 50)
    ids = (x[..., 0, 0] * 255).round().long()
    for e in range(7):
        assert torch.bincount(y[e], minlength=5).tolist() == [10] * 5
        for label in range(5):  # one class per label within the stream, 10 distinct drawers
            members = ids[e][y[e] == label]
            assert len(set((members // 20).tolist())) == 1 and len(set(members.tolist())) == 10
    assert not torch.equal(y[0], y[1])  # shuffled order


def test_mean_ci95():
    mean, half = mean_ci95(torch.tensor([0.0, 1.0] * 50))
    assert mean == pytest.approx(0.5)
    assert half == pytest.approx(1.96 * 0.5025 / 10, rel=1e-3)


# --- the real mirror (skipped where absent) -----------------------------------------------------


@needs_real_mirror
def test_real_zips_name_the_alphabets_the_readme_lists():
    known = O.known_alphabets(REAL_MIRROR / "omniglot")
    assert (
        known["Balinese"] == (108, 24) and known["Korean"][0] == 643 and known["Tagalog"][0] == 893
    )
    names = O.folder_names(1, 964, known)
    assert names[107] == ("Balinese", "character01") and names[0] == (
        "alphabet_from_id_0001",
        "character01",
    )


@needs_real_mirror
def test_real_cached_tensor_if_prepared():
    root = Path(os.environ.get("SHORTSCI_DATA", O.mirror_mod.DEFAULT_ROOT))
    if not list((root / "omniglot-py" / "cache").glob("omniglot_28px_*.pt")):
        pytest.skip("Omniglot not decoded yet (a 28x28 run does it once, about 1 min)")
    x, info = O.omniglot_tensor(root, 28)
    assert x.shape == (1623, 20, 28, 28) and info["cache_hit"]
    assert 0.04 < x.float().mean().item() / 255 < 0.15  # ink is a small fraction of a drawing
