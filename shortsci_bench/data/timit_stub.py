"""A small synthetic corpus in TIMIT's exact on-disk layout, read by the real TIMIT reader.

TIMIT is licensed by the LDC and is not on our machines. So that the whole reader (layout
discovery, NIST SPHERE headers, `.PHN` sample offsets, phone folding, speaker sets) and
everything downstream runs in tests and anywhere, `write_stub_corpus` writes
`TRAIN|TEST/DR1..DR8/<speaker>/<utt>.WAV|.PHN|.WRD|.TXT` with real 1024-byte SPHERE headers
and 16-bit PCM made of phone-specific tones. The test folder holds a few real core-test and
development speaker IDs (so the pinned manifests select them) and one speaker in neither
list (which the reader must leave out). Records from this data say `stub: true`; the
collector never gives them a verdict.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from filelock import FileLock

from shortsci_bench.data.sphere import sphere_bytes, write_riff
from shortsci_bench.data.timit import (
    TIMITDataModule,
    core_test_dialects,
    core_test_speakers,
    dev_speakers,
    phone_table,
)

RATE = 16000
SILENCES = ("h#", "pau", "epi")
CLOSURES = ("bcl", "dcl", "gcl", "pcl", "tcl", "kcl", "q")
STUB_NOTE = (
    "stub data: synthetic TIMIT-layout corpus (dataset=timit_stub), not TIMIT; "
    "it checks the plumbing and carries no evidence about the paper's claims"
)
# SA1/SA2 are read by every speaker in real TIMIT; here too (and excluded from all sets).
SA_PHONES = {
    "SA1": "sh iy hh ae dcl d y er dcl d aa r kcl k s uw dx ih n gcl g r iy s iy w aa sh",
    "SA2": "dh ix s ao l tcl t ix n ey dx ix dcl d ax l ax n",
}


def _phone_signal(phone: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """A phone-specific sound: two tones whose frequencies encode the phone's index."""
    t = np.arange(n) / RATE
    if phone in SILENCES:
        return rng.normal(0, 30, n)
    if phone in CLOSURES:
        return rng.normal(0, 150, n)
    k = sorted(phone_table()).index(phone)
    f1, f2 = 250 + 55 * (k % 13), 1100 + 260 * (k // 13)
    env = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / 80.0)
    wave = np.sin(2 * np.pi * f1 * t) + 0.6 * np.sin(2 * np.pi * f2 * t + k)
    return 4000 * env * wave + rng.normal(0, 200, n)


def _utterance(
    phones: list[str], rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
    chunks, segs, pos = [], [], 0
    for p in phones:
        if p in SILENCES:
            dur = rng.integers(1600, 3200)  # 100-200 ms
        elif p in CLOSURES:
            dur = rng.integers(480, 960)
        else:
            dur = rng.integers(960, 2080)  # 60-130 ms
        chunks.append(_phone_signal(p, int(dur), rng))
        segs.append((pos, pos + int(dur), p))
        pos += int(dur)
    audio = np.clip(np.concatenate(chunks), -32768, 32767).astype(np.int16)
    return audio, segs


def _random_phones(rng: np.random.Generator, n: int) -> list[str]:
    pool = [p for p in sorted(phone_table()) if p not in ("h#", "pau", "epi")]
    body = [pool[i] for i in rng.integers(0, len(pool), n)]
    if n > 6:  # a pause in the middle, as in read speech
        body.insert(n // 2, "pau")
    return ["h#", *body, "h#"]


def stub_speakers(
    n_train: int = 8, n_core: int = 2, n_dev: int = 2
) -> dict[str, list[tuple[str, str]]]:
    """(dialect region, speaker) for each folder. Train speakers are invented IDs; the test
    folder holds the first `n_core` core-test and `n_dev` development speakers of the pinned
    lists and one speaker in neither (`MZZZ9`)."""
    train = [(f"DR{i % 8 + 1}", f"{'FM'[i % 2]}S{chr(65 + i // 26)}{chr(65 + i % 26)}{i % 10}")
             for i in range(n_train)]  # fmt: skip
    dialects = core_test_dialects()
    core = [(dialects[s], s) for s in core_test_speakers()[:n_core]]
    dev = [(f"DR{i % 8 + 1}", s) for i, s in enumerate(dev_speakers()[:n_dev])]
    return {"TRAIN": train, "TEST": [*core, *dev, ("DR3", "MZZZ9")]}


def write_stub_corpus(
    root: str | Path,
    n_train_speakers: int = 8,
    n_core: int = 2,
    n_dev: int = 2,
    sentences: tuple[str, ...] = ("SA1", "SA2", "SI1", "SX1", "SX2", "SX3"),
    seed: int = 0,
    lower_case: bool = False,
    riff: bool = False,
) -> Path:
    """Write the corpus under `root` (idempotent: a complete corpus with the same settings
    is left alone) and return `root`. `lower_case` writes `train/dr1/faks0/sa1.wav`;
    `riff` adds the RIFF `.WAV.wav` copy beside each SPHERE file."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".stub.lock")):  # parallel runs (multirun) share one corpus
        return _write_stub_corpus(
            root, n_train_speakers, n_core, n_dev, sentences, seed, lower_case, riff
        )


def _write_stub_corpus(
    root, n_train_speakers, n_core, n_dev, sentences, seed, lower_case, riff
) -> Path:
    settings = dict(n_train_speakers=n_train_speakers, n_core=n_core, n_dev=n_dev,
                    sentences=list(sentences), seed=seed, lower_case=lower_case, riff=riff)  # fmt: skip
    stamp = root / ".stub-complete.json"
    if stamp.exists() and json.loads(stamp.read_text()) == settings:
        return root
    case = str.lower if lower_case else str.upper
    rng = np.random.default_rng(seed)
    for split, speakers in stub_speakers(n_train_speakers, n_core, n_dev).items():
        for si, (dr, spk) in enumerate(speakers):
            folder = root / case(split) / case(dr) / case(spk)
            folder.mkdir(parents=True, exist_ok=True)
            for k, sent in enumerate(sentences):
                num = (
                    sent[:2] + str(int(sent[2:]) + 100 * si + 10 * k) if sent[:2] != "SA" else sent
                )
                if sent in SA_PHONES:
                    phones = ["h#", *SA_PHONES[sent].split(), "h#"]
                else:
                    phones = _random_phones(rng, int(rng.integers(8, 15)))
                audio, segs = _utterance(phones, rng)
                stem = folder / case(num)
                uid = f"{spk.lower()}_{num.lower()}"
                (stem.parent / (stem.name + case(".wav"))).write_bytes(
                    sphere_bytes(audio, RATE, utterance_id=uid, speaker_id=spk.lower())
                )
                if riff:
                    write_riff(stem.parent / (stem.name + case(".wav") + ".wav"), audio, RATE)
                (stem.parent / (stem.name + case(".phn"))).write_text(
                    "".join(f"{a} {b} {p}\n" for a, b, p in segs)
                )
                words = _words(segs)
                (stem.parent / (stem.name + case(".wrd"))).write_text(
                    "".join(f"{a} {b} {w}\n" for a, b, w in words)
                )
                (stem.parent / (stem.name + case(".txt"))).write_text(
                    f"0 {len(audio)} {' '.join(w for _, _, w in words)}.\n"
                )
    stamp.write_text(json.dumps(settings))
    return root


def _words(segs: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Pseudo-words: runs of three non-silent phones, named by a hash of their phones."""
    speech = [s for s in segs if s[2] not in SILENCES]
    out = []
    for i in range(0, len(speech), 3):
        run = speech[i : i + 3]
        name = "w" + hashlib.sha1(" ".join(p for *_, p in run).encode()).hexdigest()[:5]
        out.append((run[0][0], run[-1][1], name))
    return out


class TIMITStubDataModule(TIMITDataModule):
    """`dataset=timit_stub`: writes the synthetic corpus under `root`, then reads it with the
    real TIMIT reader. Everything it feeds a run is marked stub."""

    name = "timit_stub"
    stub = True

    def __init__(
        self,
        root: str = "data/timit_stub",
        stub_seed: int = 0,
        n_train_speakers: int = 8,
        n_core: int = 2,
        n_dev: int = 2,
        lower_case: bool = False,
        riff: bool = False,
        **kwargs,
    ):
        kwargs.setdefault("require_standard", False)
        super().__init__(root=root, **kwargs)
        self.stub_settings = dict(n_train_speakers=n_train_speakers, n_core=n_core, n_dev=n_dev,
                                  seed=stub_seed, lower_case=lower_case, riff=riff)  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            write_stub_corpus(self.root, **self.stub_settings)
        super().setup(stage)

    def provenance(self) -> dict:
        return {**super().provenance(), "stub": True, "stub_settings": self.stub_settings,
                "notes": [STUB_NOTE]}  # fmt: skip
