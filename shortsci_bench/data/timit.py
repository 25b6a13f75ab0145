"""TIMIT (LDC93S1) read from a user's copy in its standard layout.

Layout: `<root>/TRAIN|TEST/DR1..DR8/<speaker>/<utterance>.WAV|.PHN|.WRD|.TXT`, in upper
or lower case, possibly one or two folders down (`<root>/TIMIT/TRAIN`, `<root>/data/TRAIN`).
Audio is NIST SPHERE 16-bit PCM or the RIFF `.WAV.wav` copy some redistributions carry
(see `sphere.py`). `.PHN` lines are `start_sample end_sample phone`.

Standard sets (pinned in `manifests/`): SA sentences excluded; training = all 462 TRAIN
speakers (3696 utterances); development = the 50 TEST speakers of Kaldi's/ESPnet's list
(400); core test = the 24 core speakers (192). Phones: Jaitly et al. (2016) train on "the
60 phones defined for the TIMIT dataset (h# were relabelled as pau)"; the 48-phone Lee &
Hon training set is an option; scoring folds both to Lee & Hon's 39 classes (q dropped).
Features: log-mel filterbanks every 10 ms (`speech_features.py`), normalised per dimension
with the training set's mean and standard deviation.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import lightning as L
import numpy as np
import torch

from shortsci_bench.data.batches import start_at_global_step
from shortsci_bench.data.errors import DatasetMissingError
from shortsci_bench.data.sequences import Batch, FixedBatches, SequenceStream, pad_sequences
from shortsci_bench.data.speech_features import FilterbankConfig, LogMelFilterbank, moments
from shortsci_bench.data.sphere import AudioFormatError, read_audio

log = logging.getLogger(__name__)

MANIFESTS = Path(__file__).parent / "manifests"
CORE_TEST_MANIFEST = MANIFESTS / "timit_core_test_speakers.txt"
DEV_MANIFEST = MANIFESTS / "timit_dev_speakers.txt"
PHONE_MANIFEST = MANIFESTS / "timit_phones.tsv"
N_TRAIN_SPEAKERS = 462  # the standard training set: every TRAIN speaker
SA_SENTENCES = ("SA1", "SA2")  # read by every speaker: excluded from all sets, as is usual


class TimitMissingError(DatasetMissingError):
    """No usable TIMIT under `dataset.root`: say where to point it, and name the stub."""

    def __init__(self, root: Path | str | None, why: str = ""):
        self.dataset = "TIMIT"
        msg = (
            f"TIMIT is not available: no corpus under dataset.root={root!s} "
            "(expected TRAIN/ and TEST/ folders holding DR1..DR8/<speaker>/<utterance>.WAV "
            "and .PHN files, upper or lower case). TIMIT is licensed by the LDC (LDC93S1) and "
            "is never downloaded.\n"
            "Fix it in one of two ways:\n"
            "  1. point the reader at your copy: `dataset.root=/path/to/TIMIT`;\n"
            "  2. run on the synthetic stand-in corpus in the same layout: `dataset=timit_stub` "
            "(its records say `stub: true` and never get a verdict)."
        )
        if why:
            msg += f"\n({why})"
        RuntimeError.__init__(self, msg)


# --- speaker lists and phone sets --------------------------------------------------------
def _manifest_lines(path: Path) -> list[str]:
    return [
        ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]


@cache
def core_test_speakers() -> tuple[str, ...]:
    return tuple(line.split()[-1].upper() for line in _manifest_lines(CORE_TEST_MANIFEST))


@cache
def core_test_dialects() -> dict[str, str]:
    return {
        ln.split()[1].upper(): ln.split()[0].upper() for ln in _manifest_lines(CORE_TEST_MANIFEST)
    }


@cache
def dev_speakers() -> tuple[str, ...]:
    return tuple(line.upper() for line in _manifest_lines(DEV_MANIFEST))


@cache
def phone_table() -> dict[str, tuple[str | None, str | None]]:
    """61 TIMIT phones -> (48-phone class, 39-phone class); None where dropped (q)."""
    table = {}
    for line in _manifest_lines(PHONE_MANIFEST):
        p61, p48, p39 = line.split("\t")
        table[p61] = (None if p48 == "-" else p48, None if p39 == "-" else p39)
    return table


def manifest_checksums() -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        for p in (CORE_TEST_MANIFEST, DEV_MANIFEST, PHONE_MANIFEST)
    }


class PhoneFolding:
    """Training classes (60: the 61 with h# -> pau; or 48) and their 39 scoring classes."""

    def __init__(self, train_phones: int = 60):
        table = phone_table()
        if train_phones == 60:
            self.to_train = {p: ("pau" if p == "h#" else p) for p in table}
        elif train_phones == 48:
            self.to_train = {p: table[p][0] for p in table}
        else:
            raise ValueError(f"train_phones must be 60 or 48, not {train_phones}")
        self.classes: tuple[str, ...] = tuple(sorted({c for c in self.to_train.values() if c}))
        self.index = {c: i for i, c in enumerate(self.classes)}
        self.score_classes: tuple[str, ...] = tuple(sorted({t[1] for t in table.values() if t[1]}))
        score_index = {c: i for i, c in enumerate(self.score_classes)}
        self.phone_to_score = {p: (score_index[t[1]] if t[1] else -1) for p, t in table.items()}
        # training class -> scoring class (consistent: every 61-phone in a class folds alike)
        smap = {}
        for p, c in self.to_train.items():
            if c is not None:
                smap.setdefault(c, self.phone_to_score[p])
                assert smap[c] == self.phone_to_score[p], f"inconsistent folding for {c}"
        self.score_map = torch.tensor([smap[c] for c in self.classes], dtype=torch.long)

    def encode(self, phones: Sequence[str]) -> tuple[list[int], list[int]]:
        """Training ids of a 61-phone sequence, and the positions kept (q may be dropped)."""
        ids, kept = [], []
        for i, p in enumerate(phones):
            c = self.to_train[p]
            if c is not None:
                ids.append(self.index[c])
                kept.append(i)
        return ids, kept

    def score_reference(self, phones: Sequence[str]) -> list[int]:
        """The 39-class reference of a 61-phone sequence (q dropped)."""
        return [self.phone_to_score[p] for p in phones if self.phone_to_score[p] >= 0]


# --- the corpus on disk ------------------------------------------------------------------
@dataclass(frozen=True)
class Utterance:
    split: str  # TRAIN | TEST (the folder it came from)
    dialect: str  # DR1..DR8
    speaker: str  # e.g. MDAB0 (upper case)
    sentence: str  # e.g. SX123 (upper case)
    audio: tuple[Path, ...]  # candidates, preferred first (.WAV, then .WAV.wav)
    phn: Path

    @property
    def uid(self) -> str:
        return f"{self.speaker}_{self.sentence}"


def _children(folder: Path) -> dict[str, Path]:
    """Entries of `folder` by lower-case name (TIMIT copies come in either case)."""
    try:
        return {p.name.lower(): p for p in folder.iterdir()}
    except OSError:
        return {}


def find_corpus_root(root: str | Path | None, depth: int = 2) -> Path | None:
    """The folder holding TRAIN/ and TEST/ at `root` or up to `depth` folders below it."""
    if root is None:
        return None
    frontier = [Path(root)]
    for _ in range(depth + 1):
        nxt = []
        for folder in sorted(frontier):
            kids = _children(folder)
            if "train" in kids and "test" in kids and kids["train"].is_dir():
                return folder
            nxt += [p for p in kids.values() if p.is_dir() and not p.name.startswith(".")]
        frontier = nxt
    return None


def scan_corpus(corpus: Path) -> list[Utterance]:
    """Every utterance with audio and a .PHN file, SA included, in a stable order."""
    kids = _children(corpus)
    utts = []
    for split in ("train", "test"):
        for dr_name, dr in sorted(_children(kids[split]).items()):
            if not (dr.is_dir() and dr_name.startswith("dr")):
                continue
            for spk_name, spk in sorted(_children(dr).items()):
                if not spk.is_dir():
                    continue
                files = _children(spk)
                stems = sorted({n.split(".")[0] for n in files if n.endswith(".phn")})
                for stem in stems:
                    audio = tuple(
                        files[n] for n in (f"{stem}.wav", f"{stem}.wav.wav") if n in files
                    )
                    if audio:
                        utts.append(
                            Utterance(split.upper(), dr_name.upper(), spk_name.upper(),
                                      stem.upper(), audio, files[f"{stem}.phn"])
                        )  # fmt: skip
    return utts


def standard_sets(
    utts: Sequence[Utterance], require_all: bool = True
) -> dict[str, list[Utterance]]:
    """SA excluded; train = TRAIN speakers; dev and core test = the pinned TEST speakers."""
    core, dev = set(core_test_speakers()), set(dev_speakers())
    assert not core & dev, "the dev and core test manifests overlap"
    usable = [u for u in utts if u.sentence not in SA_SENTENCES]
    sets = {
        "train": [u for u in usable if u.split == "TRAIN"],
        "dev": [u for u in usable if u.split == "TEST" and u.speaker in dev],
        "test": [u for u in usable if u.split == "TEST" and u.speaker in core],
    }
    if require_all:
        for name, wanted in (("dev", dev), ("test", core)):
            missing = wanted - {u.speaker for u in sets[name]}
            if missing:
                raise TimitMissingError(
                    None,
                    f"the corpus lacks {len(missing)} {name} speakers: {sorted(missing)[:5]}...",
                )
        n_train = len({u.speaker for u in sets["train"]})
        if n_train != N_TRAIN_SPEAKERS:
            log.warning(
                "TIMIT TRAIN has %d speakers, not the standard %d", n_train, N_TRAIN_SPEAKERS
            )
    return sets


def read_phn(path: Path) -> list[tuple[int, int, str]]:
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            out.append((int(parts[0]), int(parts[1]), parts[2].lower()))
    return out


def read_utterance_audio(utt: Utterance) -> np.ndarray:
    """Samples of the first audio candidate that reads (a compressed .WAV falls back to RIFF)."""
    errors = []
    for path in utt.audio:
        try:
            audio = read_audio(path)
        except AudioFormatError as exc:
            errors.append(str(exc))
            continue
        if audio.sample_rate != 16000:
            raise AudioFormatError(f"{path}: sample rate {audio.sample_rate}, TIMIT is 16 kHz")
        return audio.samples
    raise AudioFormatError("; ".join(errors))


@dataclass
class SplitData:
    uids: list[str]
    feats: list[torch.Tensor]  # (frames, dim) each, normalised after setup
    targets: list[torch.Tensor]  # training-class ids
    end_frames: list[torch.Tensor]  # per target: the frame its phone was last heard in
    references: list[list[int]]  # 39-class references for scoring


# --- the datamodule ----------------------------------------------------------------------
class TIMITDataModule(L.LightningDataModule):
    """TIMIT's standard train / dev / core-test sets as normalised log-mel sequences.

    Batches are dicts: `x` (B, T, dim), `x_len`, `y` (B, S) training-class ids, `y_len`,
    `y_end` (B, S) the frame each target phone ends in (for given alignments), `idx`.
    `score_map` folds training classes to the 39 scoring classes (-1: dropped).
    """

    name = "timit"
    stub = False

    def __init__(
        self,
        root: str | None = None,
        train_phones: int = 60,
        n_mels: int = 40,
        energy: bool = True,
        delta_order: int = 2,
        feature_dim: int = 123,
        n_classes: int = 60,
        batch_size: int = 1,
        eval_batch_size: int = 32,
        steps: int = 1000,
        seed: int = 0,
        train_subset: int | None = None,
        eval_subset: int | None = None,
        require_standard: bool = True,
        cache_dir: str | None = None,
    ):
        super().__init__()
        self.root = root
        self.folding = PhoneFolding(int(train_phones))
        self.fbank_cfg = FilterbankConfig(n_mels=n_mels, energy=energy, delta_order=delta_order)
        if self.fbank_cfg.dim != feature_dim:
            raise ValueError(
                f"dataset.feature_dim={feature_dim} but {n_mels} mels"
                f"{' + energy' if energy else ''} with delta order {delta_order} "
                f"give {self.fbank_cfg.dim}"
            )
        if len(self.folding.classes) != n_classes:
            raise ValueError(
                f"dataset.n_classes={n_classes} but train_phones={train_phones} gives "
                f"{len(self.folding.classes)} classes"
            )
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.steps, self.seed = steps, seed
        self.train_subset, self.eval_subset = train_subset, eval_subset
        self.require_standard = require_standard
        self.cache_dir = cache_dir
        self.splits: dict[str, SplitData] = {}
        self.corpus: Path | None = None
        self.norm: tuple[torch.Tensor, torch.Tensor] | None = None
        self.load_seconds = 0.0
        self.cache_hit = False

    # the symbols the task needs to score
    @property
    def symbols(self) -> tuple[str, ...]:
        return self.folding.classes

    @property
    def score_map(self) -> torch.Tensor:
        return self.folding.score_map

    def locate(self) -> Path:
        corpus = find_corpus_root(self.root)
        if corpus is None:
            why = "the folder does not exist" if self.root and not Path(self.root).exists() else ""
            raise TimitMissingError(self.root, why)
        return corpus

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        t0 = time.perf_counter()
        self.corpus = self.locate()
        sets = standard_sets(scan_corpus(self.corpus), self.require_standard)
        if not sets["train"]:
            raise TimitMissingError(self.root, f"no training utterances found under {self.corpus}")
        if self.train_subset:
            sets["train"] = _spread(sets["train"], self.train_subset)
        if self.eval_subset:
            sets["dev"] = _spread(sets["dev"], self.eval_subset)
            sets["test"] = _spread(sets["test"], self.eval_subset)
        raw = self._features(sets)
        mean, std = moments(raw["train"])
        self.norm = (mean, std)
        for name, utts in sets.items():
            self.splits[name] = self._split(utts, [(f - mean) / std for f in raw[name]])
        self.load_seconds = time.perf_counter() - t0

    def _features(self, sets: dict[str, list[Utterance]]) -> dict[str, list[torch.Tensor]]:
        key = _cache_key(sets, self.fbank_cfg)
        path = Path(self.cache_dir) / f"timit-fbank-{key}.pt" if self.cache_dir else None
        if path is not None and path.exists():
            self.cache_hit = True
            return torch.load(path)
        fbank = LogMelFilterbank(self.fbank_cfg)
        raw = {
            name: [
                fbank(torch.from_numpy(read_utterance_audio(u).astype(np.float32))) for u in utts
            ]
            for name, utts in sets.items()
        }
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save(raw, tmp)
            os.replace(tmp, path)
        return raw

    def _split(self, utts: list[Utterance], feats: list[torch.Tensor]) -> SplitData:
        data = SplitData([], [], [], [], [])
        for u, f in zip(utts, feats):
            segs = read_phn(u.phn)
            phones = [p for _, _, p in segs]
            ids, kept = self.folding.encode(phones)
            ends = [min(self.fbank_cfg.frame_of_sample(segs[i][1]), len(f) - 1) for i in kept]
            data.uids.append(u.uid)
            data.feats.append(f)
            data.targets.append(torch.tensor(ids, dtype=torch.long))
            data.end_frames.append(torch.tensor(ends, dtype=torch.long))
            data.references.append(self.folding.score_reference(phones))
        return data

    # --- batches ---------------------------------------------------------------
    def collate(self, split: str, idx: torch.Tensor) -> Batch:
        d = self.splits[split]
        items = [int(i) for i in idx]
        x, x_len = pad_sequences([d.feats[i] for i in items])
        y, y_len = pad_sequences([d.targets[i] for i in items])
        y_end, _ = pad_sequences([d.end_frames[i] for i in items], value=-1)
        return {"x": x, "x_len": x_len, "y": y, "y_len": y_len, "y_end": y_end,
                "idx": torch.tensor(items, dtype=torch.long)}  # fmt: skip

    def train_dataloader(self) -> SequenceStream:
        trainer = self.trainer
        return SequenceStream(
            len(self.splits["train"].feats),
            self.batch_size,
            self.steps,
            self.seed,
            collate=lambda idx: self.collate("train", idx),
            start_step=start_at_global_step(trainer),
        )

    def _eval_batches(self, split: str) -> FixedBatches:
        d = self.splits[split]
        # longest first: less padding per batch, and a fixed order
        order = sorted(range(len(d.feats)), key=lambda i: (-len(d.feats[i]), d.uids[i]))
        by_len = torch.tensor(order, dtype=torch.long)
        return FixedBatches(len(order), self.eval_batch_size,
                            lambda idx: self.collate(split, by_len[idx]))  # fmt: skip

    def val_dataloader(self) -> FixedBatches:
        return self._eval_batches("dev")

    def test_batches(self) -> FixedBatches:
        return self._eval_batches("test")

    def references(self, split: str) -> list[list[int]]:
        return self.splits[split].references

    def provenance(self) -> dict:
        counts = {k: len(v.uids) for k, v in self.splits.items()}
        speakers = {k: len({u.split("_")[0] for u in v.uids}) for k, v in self.splits.items()}
        frames = sum(len(f) for f in self.splits["train"].feats) if self.splits else 0
        return {
            "dataset": self.name,
            "stub": self.stub,
            "root": str(self.root),
            "corpus": str(self.corpus),
            "utterances": counts,
            "speakers": speakers,
            "train_frames": frames,
            "train_phones": len(self.folding.classes),
            "score_phones": len(self.folding.score_classes),
            "features": {
                "n_mels": self.fbank_cfg.n_mels,
                "energy": self.fbank_cfg.energy,
                "delta_order": self.fbank_cfg.delta_order,
                "dim": self.fbank_cfg.dim,
                "hop_ms": self.fbank_cfg.hop_ms,
                "win_ms": self.fbank_cfg.win_ms,
            },  # fmt: skip
            "normalisation": "per-dimension mean/std of the training frames",
            "manifests": manifest_checksums(),
            "feature_cache_hit": self.cache_hit,
            "load_seconds": round(self.load_seconds, 2),
        }


def _spread(items: list, n: int) -> list:
    """`n` items spread evenly over the list (so a subset spans the speakers)."""
    if n >= len(items):
        return list(items)
    picks = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in picks]


def _cache_key(sets: dict[str, list[Utterance]], cfg: FilterbankConfig) -> str:
    h = hashlib.sha256(repr(cfg).encode())
    for name in sorted(sets):
        for u in sets[name]:
            h.update(f"{name}:{u.uid}:{u.audio[0].stat().st_size}".encode())
    return h.hexdigest()[:16]
