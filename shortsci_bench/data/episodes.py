"""Few-shot episodes over a `[classes, drawers, H, W]` image tensor, assembled by indexing.

- N-way k-shot episodes with q queries per class (Vinyals et al., NIPS 2016, section 4.1):
  `sample_episode_index` draws the classes and the drawers, `episode_batch` gathers them.
- Label streams (Santoro et al., ICML 2016, section 4): `way` classes x `instances` drawings
  in random order, labels 0..way-1 given to the classes at random within each episode.
- Training episodes are a function of (seed, global step), so a resumed run sees the same
  episodes (`GeneratedSteps`). Evaluation episodes are pinned: drawn from `EVAL_SEED` and the
  setting alone, never from the run's seed, so every model is scored on the same episodes;
  `index_sha256` fingerprints them for the run record.

No per-item Python: an episode batch is one fancy-indexing of the image tensor.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from typing import Any

import torch

from shortsci_bench.data.batches import GeneratedSteps

EVAL_SEED = 160604080  # fixed (arXiv 1606.04080); independent of every run's seed
_SETTING = re.compile(r"^(\d+)w(\d+)s$")


def parse_setting(name: str) -> tuple[int, int]:
    """`"20w5s"` -> (way, shot) = (20, 5)."""
    m = _SETTING.match(name)
    if not m:
        raise ValueError(f"episode setting {name!r}: write it as <way>w<shot>s, e.g. 5w1s")
    return int(m.group(1)), int(m.group(2))


def _random_subsets(
    n_rows: tuple[int, ...], n_items: int, k: int, g: torch.Generator
) -> torch.Tensor:
    """k distinct items of range(n_items) for each row, in random order (sorting random keys)."""
    if k > n_items:
        raise ValueError(f"cannot draw {k} distinct items from {n_items}")
    keys = torch.rand(*n_rows, n_items, generator=g, dtype=torch.float64)
    return keys.argsort(dim=-1, stable=True)[..., :k]


def sample_episode_index(
    n_classes: int,
    way: int,
    per_class: int,
    n_episodes: int,
    g: torch.Generator,
    n_drawers: int = 20,
) -> dict[str, torch.Tensor]:
    """`classes` [E, way] and `drawers` [E, way, per_class]: which drawings make each episode."""
    classes = _random_subsets((n_episodes,), n_classes, way, g)
    drawers = _random_subsets((n_episodes, way), n_drawers, per_class, g)
    return {"classes": classes, "drawers": drawers}


def gather(images: torch.Tensor, index: dict[str, torch.Tensor]) -> torch.Tensor:
    """[E, way, per_class, ...] drawings (or features) of each episode's classes and drawers."""
    classes = index["classes"].to(images.device)
    drawers = index["drawers"].to(images.device)
    return images[classes[..., None], drawers]


def support_query(x: torch.Tensor, shot: int) -> dict[str, torch.Tensor]:
    """Split [E, way, shot + q, ...] into a labelled support set and a query set.

    Labels are 0..way-1 in the order of the episode's (randomly drawn) classes.
    """
    e, way, per_class = x.shape[:3]
    rest = x.shape[3:]
    labels = torch.arange(way, device=x.device)
    return {
        "support": x[:, :, :shot].reshape(e, way * shot, *rest),
        "support_labels": labels.repeat_interleave(shot).expand(e, -1),
        "query": x[:, :, shot:].reshape(e, way * (per_class - shot), *rest),
        "query_labels": labels.repeat_interleave(per_class - shot).expand(e, -1),
    }


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ink (255 = ink) -> float in [0, 1] with a channel axis: [..., H, W] -> [..., 1, H, W]."""
    return images.float().div_(255.0).unsqueeze(-3)


def episode_batch(
    images: torch.Tensor, way: int, shot: int, queries: int, n_episodes: int, g: torch.Generator
) -> dict[str, Any]:
    """`n_episodes` N-way k-shot episodes with `queries` queries per class, as float images."""
    index = sample_episode_index(len(images), way, shot + queries, n_episodes, g, images.shape[1])
    batch = support_query(to_float(gather(images, index)), shot)
    return {**batch, "way": way}


def _setting_seed(seed: int, tag: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{tag}".encode()).digest()[:7], "little")


def pinned_episodes(
    n_classes: int, way: int, shot: int, queries: int, n_episodes: int, seed: int = EVAL_SEED
) -> dict[str, torch.Tensor]:
    """The fixed evaluation episodes of one setting over `n_classes` test classes."""
    g = torch.Generator().manual_seed(_setting_seed(seed, f"{way}w{shot}s{queries}q{n_classes}c"))
    return sample_episode_index(n_classes, way, shot + queries, n_episodes, g)


def sample_sequence_index(
    n_classes: int,
    way: int,
    instances: int,
    n_episodes: int,
    g: torch.Generator,
    n_drawers: int = 20,
) -> dict[str, torch.Tensor]:
    """A label stream's classes, drawers and presentation `order` (a permutation of way*instances)."""
    index = sample_episode_index(n_classes, way, instances, n_episodes, g, n_drawers)
    index["order"] = _random_subsets((n_episodes,), way * instances, way * instances, g)
    return index


def gather_sequences(
    images: torch.Tensor, index: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x [E, T, H, W] float in [0, 1], y [E, T]): drawings in stream order and their labels.

    Class j of an episode carries label j; the classes were drawn in random order, so the
    labels are a random assignment that holds within the episode only.
    """
    x = gather(images, index)  # [E, way, instances, H, W]
    e, way, instances = x.shape[:3]
    order = index["order"].to(images.device)
    x = x.reshape(e, way * instances, *x.shape[3:])
    x = x[torch.arange(e, device=x.device)[:, None], order]
    y = torch.arange(way, device=x.device).repeat_interleave(instances)[order]
    return x.float().div_(255.0), y


def sequence_batch(
    images: torch.Tensor, way: int, instances: int, n_episodes: int, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    index = sample_sequence_index(len(images), way, instances, n_episodes, g, images.shape[1])
    return gather_sequences(images, index)


def pinned_sequences(
    n_classes: int, way: int, instances: int, n_episodes: int, seed: int = EVAL_SEED
) -> dict[str, torch.Tensor]:
    """The fixed evaluation label streams over `n_classes` test classes."""
    g = torch.Generator().manual_seed(_setting_seed(seed, f"stream{way}c{instances}i{n_classes}c"))
    return sample_sequence_index(n_classes, way, instances, n_episodes, g)


# The pinned test episodes of the default protocol (1,000 per setting, 5 queries per class;
# 423 test classes = split vinyals_1200, 659 = split lake) and test streams (5 classes x 10).
# `check_pinned` refuses to score on anything else, e.g. after a change in torch's generator.
PINNED_SHA256 = {
    (423, "5w1s", 5, 1000): "1f4a686f4053026148fcabe3541058133f683b86be9f92f7c263dc3ebd7b6da3",
    (423, "5w5s", 5, 1000): "cb69f9d1982ffd013a487db77f0f1dcbc0f8ddf7854cba624b24e9a451ccbb3d",
    (423, "20w1s", 5, 1000): "11bf1b17fc5f0e378f8b0f8f19c207663cbc8f544c86f33516c6a67d0004dcbd",
    (423, "20w5s", 5, 1000): "a380fb956c00651578a22fc7a14279cc3a3557a9671ad4c0f06af0e70ce46cd5",
    (659, "5w1s", 5, 1000): "89495b1b2310082bf9f98067ae887bd8d29fea9903ba9d2edd28ee537caf5377",
    (659, "5w5s", 5, 1000): "d5823cf4d1b8e6845b7eece9a88b7436b4eaa40845f484f10af21cb246d40d1e",
    (659, "20w1s", 5, 1000): "34c6fc28ccfe8c4174cdb780398150898963757eaf6de2dc6f34f1bbe3050840",
    (659, "20w5s", 5, 1000): "9e43f49e3dcb287ef0ec4f49bddd16c5286db6fb3fc8d408780d55f2a1674d6a",
    (423, "5c10i", 0, 1000): "aa48eee258baf9b1dadcb596f22603ac04d7dfc515e46e3b8f5a9db7b97aa0e3",
}


def check_pinned(n_classes: int, name: str, queries: int, index: dict[str, torch.Tensor]) -> str:
    """The index's sha256, after checking it against `PINNED_SHA256` where that pins it."""
    digest = index_sha256(index)
    key = (n_classes, name, queries, len(index["classes"]))
    if key in PINNED_SHA256 and PINNED_SHA256[key] != digest:
        raise RuntimeError(
            f"the pinned test episodes {key} came out different ({digest[:12]}... != "
            f"{PINNED_SHA256[key][:12]}...): the episode generator changed (torch version?); "
            "results would not be comparable with earlier runs"
        )
    return digest


def index_sha256(index: dict[str, torch.Tensor]) -> str:
    """A fingerprint of pinned episodes (shapes and int64 values), for run records and tests."""
    h = hashlib.sha256()
    for key in sorted(index):
        t = index[key].detach().to("cpu", torch.int64).contiguous()
        h.update(f"{key}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def mean_ci95(values: torch.Tensor) -> tuple[float, float]:
    """Mean and the half-width of its normal 95% interval (1.96 standard errors) over episodes."""
    v = values.double().flatten()
    if v.numel() < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), 1.96 * float(v.std(unbiased=True)) / math.sqrt(v.numel())


# `steps` training batches; batch i is `build(generator seeded by (seed, i))`. Like
# `TrainStream`, it starts at the trainer's global step on each `iter()`, so a resumed run
# continues with exactly the episodes an uninterrupted run would have drawn.


class PinnedEpisodes:
    """One evaluation batch: the test drawings and every setting's pinned episode index.

    (A one-item iterable rather than a list: Lightning reads a list as several loaders.)
    """

    def __init__(self, images: torch.Tensor, index: dict[str, dict[str, torch.Tensor]]):
        self.images, self.index = images, index

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield {"images": self.images, "episodes": self.index}


class PinnedSequences:
    """The pinned evaluation streams in chunks of `batch` episodes: (x, y) as in `gather_sequences`."""

    def __init__(self, images: torch.Tensor, index: dict[str, torch.Tensor], batch: int, name: str):
        self.images, self.index, self.batch, self.name = images, index, batch, name
        self.n = len(index["classes"])

    def __len__(self) -> int:
        return -(-self.n // self.batch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, self.n, self.batch):
            yield gather_sequences(
                self.images, {k: v[i : i + self.batch] for k, v in self.index.items()}
            )
