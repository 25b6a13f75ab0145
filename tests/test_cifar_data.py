"""CIFAR-10 sources (on a tiny fake mirror in the real file formats) and batch augmentation."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import CIFAR10

from shortsci_bench.data import cifar10 as C
from shortsci_bench.data import mirror as mirror_mod
from shortsci_bench.data.augment import ImageNormalizer, fit_zca, pad_crop_flip
from shortsci_bench.data.batches import TrainStream
from shortsci_bench.data.errors import DatasetMissingError

N_TRAIN, N_TEST, N_TEST_EXTRA = 20, 10, 3  # images in the fake PNGs; extra JPEG-only test images


def smooth_images(n: int, seed: int) -> np.ndarray:
    """Distinct low-frequency colour images (JPEG keeps them close), uint8 (n, 3, 32, 32)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, 3, 4, 4)).astype(np.float32)
    big = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=32, mode="bilinear")
    return big.clamp(0, 255).round().to(torch.uint8).numpy()


def write_fake_mirror(mirror: Path) -> dict[str, np.ndarray]:
    """A mirror `cifar10/` in the real formats: ConvNetJS PNGs (row i = image i) and
    labels.js (50,000 train labels, then test), and a JPEG tar with class folders whose
    k-th file is the k-th image of that class. Returns the pixels it encoded."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 51_000)
    train, test = smooth_images(N_TRAIN, 2), smooth_images(N_TEST + N_TEST_EXTRA, 3)
    test_labels = np.concatenate([labels[50_000 : 50_000 + N_TEST], [0, 5, 9]])
    src = mirror / "cifar10" / "convnetjs"
    src.mkdir(parents=True)
    for name, imgs in (("cifar10_batch_0.png", train), ("cifar10_batch_50.png", test[:N_TEST])):
        rows = imgs.transpose(0, 2, 3, 1).reshape(len(imgs), 1024, 3)
        Image.fromarray(rows, "RGB").save(src / name)
    (src / "cifar10_labels.js").write_text("var labels=[" + ", ".join(map(str, labels)) + "];\n")
    with tarfile.open(mirror / "cifar10" / C.JPEG_TAR, "w:gz") as tar:
        for split, imgs, labs in (
            ("train", train, labels[:N_TRAIN]),
            ("test", test, test_labels),
        ):
            seen: dict[int, int] = {}
            for img, lab in zip(imgs, labs):
                k = seen.get(int(lab), 0)
                seen[int(lab)] = k + 1
                buf = io.BytesIO()
                Image.fromarray(img.transpose(1, 2, 0)).save(buf, "JPEG", quality=95)
                info = tarfile.TarInfo(f"{split}/{C.CLASSES[lab]}/{k:04d}.jpg")
                info.size = len(buf.getvalue())
                tar.addfile(info, io.BytesIO(buf.getvalue()))
    sums = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  ./{p.relative_to(mirror)}"
        for p in sorted((mirror / "cifar10").rglob("*"))
        if p.is_file()
    ]
    (mirror / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return {
        "train": train,
        "train_labels": labels[:N_TRAIN],
        "test": test,
        "test_labels": test_labels,
    }


@pytest.fixture
def fake(tmp_path: Path):
    mirror = tmp_path / "mirror"
    pixels = write_fake_mirror(mirror)
    return tmp_path / "data", mirror, pixels


def test_lossless_subset_is_exact_and_in_the_original_pickle_format(fake):
    root, mirror, px = fake
    data = C.load_cifar10("subset_lossless", root, mirror)
    assert torch.equal(data.train_images, torch.from_numpy(px["train"]))
    assert data.train_labels.tolist() == px["train_labels"].tolist()
    assert torch.equal(data.test_images, torch.from_numpy(px["test"][:N_TEST]))
    assert data.provenance["source"] == "subset_lossless"
    assert "cifar10/convnetjs/cifar10_batch_0.png" in data.provenance["checksums"]
    # the batch file is what cifar-10-python.tar.gz holds, and the stock parser reads it
    batch = root / C.SUBSET_DIR / "cifar-10-batches-py" / "data_batch_1"
    with open(batch, "rb") as fh:
        entry = pickle.load(fh, encoding="latin1")
    assert set(entry) == {"batch_label", "labels", "data", "filenames"}
    assert entry["data"].dtype == np.uint8 and entry["data"].shape == (N_TRAIN, 3072)
    assert isinstance(C.CIFAR10Pickles(root / C.SUBSET_DIR), CIFAR10)
    assert C.CIFAR10Pickles(root / C.SUBSET_DIR, train=False).classes == list(C.CLASSES)


def test_jpeg_source_restores_the_original_order_and_checks_its_cache(fake):
    root, mirror, px = fake
    data = C.load_cifar10("jpeg_full", root, mirror)
    assert data.provenance["source"] == "jpeg_full" and data.provenance["lossy"]
    train = data.train_images.float()
    dist = (train[:, None] - torch.from_numpy(px["train"]).float()[None]).abs().mean((2, 3, 4))
    assert dist.argmin(1).tolist() == list(range(N_TRAIN))  # each image is its own original
    assert dist.diagonal().max() < 4  # JPEG at quality 95: a few grey levels
    assert data.train_labels.tolist() == px["train_labels"].tolist()
    # test images with known labels come first, in order; the JPEG-only extras follow
    test_dist = (data.test_images[:N_TEST].float() - torch.from_numpy(px["test"][:N_TEST])).abs()
    assert test_dist.mean((1, 2, 3)).max() < 4
    assert sorted(data.test_labels[N_TEST:].tolist()) == [0, 5, 9]
    cache = root / C.JPEG_DIR / C.JPEG_CACHE
    assert data.provenance["cache_sha256"] == hashlib.sha256(cache.read_bytes()).hexdigest()
    with open(cache, "ab") as fh:  # a damaged cache is refused, not silently used
        fh.write(b"x")
    with pytest.raises(ValueError, match="sha256"):
        C.load_cifar10("jpeg_full", root, mirror)


def test_torchvision_source_uses_the_stock_class(fake, monkeypatch):
    root, _, px = fake
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    imgs, labs = px["train"], px["train_labels"]
    for i in range(1, 6):
        C.write_cifar_batch(base / f"data_batch_{i}", imgs, labs.tolist(), "b", ["f"] * N_TRAIN)
    C.write_cifar_batch(base / "test_batch", imgs[:5], labs[:5].tolist(), "t", ["f"] * 5)
    C.write_cifar_meta(base / "batches.meta")

    def md5(name: str) -> str:
        return hashlib.md5((base / name).read_bytes()).hexdigest()

    # the stock md5 check, pointed at these files' md5 (the originals' cannot match)
    monkeypatch.setattr(
        CIFAR10, "train_list", [[f"data_batch_{i}", md5(f"data_batch_{i}")] for i in range(1, 6)]
    )
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5("test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5("batches.meta")})
    data = C.load_cifar10("torchvision", root, download=False)
    assert data.train_images.shape == (5 * N_TRAIN, 3, 32, 32)
    assert torch.equal(data.train_images[:N_TRAIN], torch.from_numpy(imgs))
    assert data.provenance["source"] == "torchvision"


@pytest.mark.parametrize("source", ["torchvision", "subset_lossless", "jpeg_full"])
def test_missing_data_fails_fast(tmp_path, monkeypatch, source):
    monkeypatch.setenv("SHORTSCI_MIRROR", str(tmp_path / "no-mirror"))
    t0 = time.perf_counter()
    with pytest.raises(DatasetMissingError, match="CIFAR-10"):
        C.load_cifar10(source, tmp_path / "data", mirror=None, download=False)
    assert time.perf_counter() - t0 < 1.0


def test_mirror_registry_knows_cifar10(fake):
    root, mirror, _ = fake
    mirror_mod.prepare("cifar10", root, mirror, quiet=True)
    assert "cifar10" in mirror_mod.UNPACKERS
    assert (root / C.JPEG_DIR / C.JPEG_CACHE).exists()
    assert mirror_mod.checksums("cifar10", root)


def reference_crop_flip(x: torch.Tensor, oy: int, ox: int, flip: bool, pad: int = 4):
    """Per-image reference: zero-pad, crop at (oy, ox), then flip left-right."""
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    crop = padded[:, oy : oy + x.shape[1], ox : ox + x.shape[2]]
    return crop.flip(-1) if flip else crop


def test_pad_crop_flip_matches_a_per_image_reference():
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    out = pad_crop_flip(x, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)  # replay the same draws
    oy, ox = torch.randint(0, 9, (16,), generator=g), torch.randint(0, 9, (16,), generator=g)
    flips = torch.rand(16, generator=g) < 0.5
    assert out.dtype == torch.uint8 and out.shape == x.shape
    for i in range(16):
        ref = reference_crop_flip(x[i], int(oy[i]), int(ox[i]), bool(flips[i]))
        assert torch.equal(out[i], ref)
    assert 0 < int(flips.sum()) < 16 and len(set(oy.tolist())) > 1


def test_augmented_stream_is_a_function_of_seed_and_step(fake):
    root, mirror, _ = fake
    dm = C.CIFAR10DataModule(
        root=str(root), mirror=str(mirror), source="subset_lossless", batch_size=8, steps=6, seed=3,
        augment={"pad": 4, "flip": True},
    )  # fmt: skip
    dm.setup()
    a = [x for x, _ in dm.train_dataloader()]
    b = [x for x, _ in dm.train_dataloader()]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], a[3])  # a new pass: new order and new crops
    resumed = TrainStream(
        (dm.data.train_images, dm.data.train_labels), 8, 6, 3,
        start_step=lambda: 4, transform=dm.train_transform(),
    )  # fmt: skip
    assert torch.equal(next(iter(resumed))[0], a[4])
    assert a[0].dtype == torch.float32
    assert abs(float(torch.cat(a).mean())) < 0.5  # per-channel standardised
    assert dm.provenance()["source"] == "subset_lossless"


def test_zca_whitens_the_training_set():
    x = torch.randint(0, 256, (600, 3, 4, 4), dtype=torch.uint8)  # 48 dimensions
    norm = ImageNormalizer.scaled(x, zca_eps=1e-5)
    white = norm(x).reshape(600, -1).double()
    cov = torch.cov(white.T, correction=0)
    assert torch.allclose(cov, torch.eye(48, dtype=torch.float64), atol=2e-2)
    mean, w = fit_zca(norm(x, whiten=False), 1e-5)
    assert torch.allclose(w, w.T, atol=1e-4)  # ZCA (not PCA) whitening is symmetric


needs_real_mirror = pytest.mark.skipif(
    mirror_mod.default_mirror() is None or not (mirror_mod.default_mirror() / "cifar10").is_dir(),  # type: ignore[operator]
    reason="no ../shared/data/cifar10 mirror",
)


@needs_real_mirror
def test_real_mirror_jpeg_and_lossless_agree():
    root = Path(__file__).resolve().parents[1] / "data"
    lossless = C.load_cifar10("subset_lossless", root)
    jpeg = C.load_cifar10("jpeg_full", root)
    assert jpeg.train_images.shape == (50_000, 3, 32, 32)
    assert jpeg.test_images.shape == (10_000, 3, 32, 32)
    assert torch.equal(lossless.train_labels, jpeg.train_labels[:4000])
    assert torch.equal(lossless.test_labels, jpeg.test_labels[:1000])
    mae = (lossless.train_images.float() - jpeg.train_images[:4000].float()).abs().mean()
    assert 1 < mae < 10  # the README's 3-9 grey levels, and far below a shuffled pairing
