"""The TIMIT reader: NIST SPHERE and RIFF audio, the corpus layout, speaker sets, phone
folding, features; the stub corpus; the missing-corpus error; `transducer_timit` smoke runs."""

from __future__ import annotations

import math
import struct
import wave

import numpy as np
import pytest
import torch

from shortsci_bench.data.errors import DatasetMissingError
from shortsci_bench.data.speech_features import FilterbankConfig, LogMelFilterbank, mel_filterbank
from shortsci_bench.data.sphere import (
    AudioFormatError,
    parse_sphere_header,
    read_audio,
    read_sphere,
)
from shortsci_bench.data.timit import (
    PhoneFolding,
    TIMITDataModule,
    core_test_dialects,
    core_test_speakers,
    dev_speakers,
    find_corpus_root,
    phone_table,
    read_phn,
    scan_corpus,
    standard_sets,
)
from shortsci_bench.data.timit_stub import TIMITStubDataModule, stub_speakers, write_stub_corpus
from tests.conftest import run_cfg


# --- NIST SPHERE, written by hand as TIMIT has it ------------------------------------------
def hand_sphere(samples: list[int], byte_format: str = "01", coding: str | None = None) -> bytes:
    lines = [
        "NIST_1A",
        "   1024",
        "database_id -s5 TIMIT",
        "database_version -s3 1.0",
        "utterance_id -s8 aks0_sa1",
        "channel_count -i 1",
        f"sample_count -i {len(samples)}",
        "sample_rate -i 16000",
        "sample_min -i -2191",
        "sample_max -i 2790",
        "sample_n_bytes -i 2",
        f"sample_byte_format -s2 {byte_format}",
        "sample_sig_bits -i 16",
    ]
    if coding:
        lines.append(f"sample_coding -s{len(coding)} {coding}")
    header = ("\n".join([*lines, "end_head"]) + "\n").encode().ljust(1024, b" ")
    fmt = "<" if byte_format == "01" else ">"
    return header + struct.pack(f"{fmt}{len(samples)}h", *samples)


def test_hand_written_sphere_file(tmp_path):
    samples = [0, 1, -1, 2790, -2191, 32767, -32768]
    path = tmp_path / "SA1.WAV"
    path.write_bytes(hand_sphere(samples) + b"\x00\x00")  # trailing bytes: sample_count rules
    audio = read_sphere(path)
    assert audio.samples.tolist() == samples and audio.samples.dtype == np.int16
    assert audio.sample_rate == 16000
    assert audio.header["utterance_id"] == "aks0_sa1" and audio.header["sample_count"] == 7
    fields, size = parse_sphere_header(path.read_bytes())
    assert size == 1024 and fields["sample_byte_format"] == "01"
    big = tmp_path / "big.wav"
    big.write_bytes(hand_sphere(samples, byte_format="10"))
    assert read_audio(big).samples.tolist() == samples
    shortened = tmp_path / "sh.wav"
    shortened.write_bytes(hand_sphere(samples, coding="pcm,embedded-shorten-v2.00"))
    with pytest.raises(AudioFormatError, match="sph2pipe"):
        read_audio(shortened)
    with pytest.raises(AudioFormatError):
        parse_sphere_header(b"RIFF....")


def test_riff_variant_is_read_by_its_magic(tmp_path):
    path = tmp_path / "SA1.WAV.wav"
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1), fh.setsampwidth(2), fh.setframerate(16000)
        fh.writeframes(struct.pack("<3h", 5, -6, 7))
    audio = read_audio(path)
    assert audio.samples.tolist() == [5, -6, 7] and audio.header == {}


# --- pinned speaker lists and phone folding ------------------------------------------------
def test_manifests_pin_the_standard_sets():
    core, dev = core_test_speakers(), dev_speakers()
    assert len(core) == 24 and len(set(core)) == 24 and len(dev) == 50 and len(set(dev)) == 50
    assert not set(core) & set(dev)
    dialects = core_test_dialects()
    for dr in range(1, 9):  # two men and one woman from every dialect region
        spk = [s for s, d in dialects.items() if d == f"DR{dr}"]
        assert sorted(s[0] for s in spk) == ["F", "M", "M"]
    assert {"MDAB0", "FELC0", "MTAS1", "FMLD0"} <= set(core) and {"FAKS0", "MRWS1"} <= set(dev)


def test_phone_folding_61_60_48_39():
    table = phone_table()
    assert len(table) == 61
    sixty, fortyeight = PhoneFolding(60), PhoneFolding(48)
    assert len(sixty.classes) == 60 and "h#" not in sixty.classes and "q" in sixty.classes
    assert len(fortyeight.classes) == 48 and len(sixty.score_classes) == 39
    # h# relabelled pau (the paper); q kept for training but never scored
    ids, kept = sixty.encode(["h#", "q", "ao", "h#"])
    assert [sixty.classes[i] for i in ids] == ["pau", "q", "ao", "pau"] and kept == [0, 1, 2, 3]
    assert sixty.score_map[sixty.index["q"]] == -1
    # the 48 set drops q and folds closures; scoring folds further (Lee & Hon)
    ids, kept = fortyeight.encode(["h#", "q", "bcl", "pcl", "ax-h", "zh"])
    assert [fortyeight.classes[i] for i in ids] == ["sil", "vcl", "cl", "ax", "zh"] and kept == [
        0,
        2,
        3,
        4,
        5,
    ]
    score = sixty.score_classes
    assert [score[i] for i in sixty.score_reference(["h#", "q", "ao", "ax-h", "zh", "en", "tcl"])] == [
        "sil", "aa", "ah", "sh", "n", "sil"]  # fmt: skip
    for fold in (sixty, fortyeight):  # training classes fold to scoring classes consistently
        for p, cls in fold.to_train.items():
            if cls is not None:
                assert int(fold.score_map[fold.index[cls]]) == fold.phone_to_score[p]


# --- the stub corpus, read by the real reader -----------------------------------------------
@pytest.fixture(scope="module")
def stub_root(tmp_path_factory):
    return write_stub_corpus(tmp_path_factory.mktemp("timit") / "TIMIT", seed=3)


def test_stub_layout_headers_and_offsets(stub_root):
    speakers = stub_speakers()
    assert (
        stub_root / "TRAIN" / speakers["TRAIN"][0][0] / speakers["TRAIN"][0][1] / "SA1.WAV"
    ).exists()
    utts = scan_corpus(find_corpus_root(stub_root.parent))  # found one level down
    assert len(utts) == (8 + 5) * 6
    for u in utts:
        assert {p.suffix for p in u.phn.parent.iterdir()} >= {".WAV", ".PHN", ".WRD", ".TXT"}
        blob = u.audio[0].read_bytes()
        fields, size = parse_sphere_header(blob)
        assert size == 1024 and fields["sample_rate"] == 16000 and fields["sample_n_bytes"] == 2
        assert len(blob) == 1024 + 2 * fields["sample_count"]
        segs = read_phn(u.phn)
        assert segs[0][0] == 0 and segs[-1][1] == fields["sample_count"]
        assert all(a[1] == b[0] for a, b in zip(segs, segs[1:]))  # contiguous sample offsets
        assert segs[0][2] == "h#" and segs[-1][2] == "h#"


def test_stub_speaker_sets(stub_root):
    sets = standard_sets(scan_corpus(stub_root), require_all=False)
    assert all(u.sentence not in ("SA1", "SA2") for us in sets.values() for u in us)
    assert {u.speaker for u in sets["train"]} == {s for _, s in stub_speakers()["TRAIN"]}
    assert {u.speaker for u in sets["test"]} == set(core_test_speakers()[:2])
    assert {u.speaker for u in sets["dev"]} == set(dev_speakers()[:2])
    everyone = {u.speaker for us in sets.values() for u in us}
    assert "MZZZ9" not in everyone  # in TEST but in neither list
    assert [len(v) for v in (sets["train"], sets["dev"], sets["test"])] == [32, 8, 8]
    with pytest.raises(DatasetMissingError, match="dev speakers"):
        standard_sets(scan_corpus(stub_root), require_all=True)


def test_datamodule_targets_frames_and_normalisation(stub_root):
    dm = TIMITDataModule(root=str(stub_root), require_standard=False, steps=4, batch_size=2)
    dm.setup()
    train = dm.splits["train"]
    allf = torch.cat(train.feats)
    assert allf.shape[1] == 123
    assert allf.mean(0).abs().max() < 1e-4 and (allf.std(0) - 1).abs().max() < 1e-3
    dev = torch.cat(dm.splits["dev"].feats)
    assert dev.mean(0).abs().max() > 1e-4  # normalised with training statistics, not its own
    uid = train.uids[0]
    spk, sent = uid.split("_")
    utt = next(u for u in scan_corpus(stub_root) if u.speaker == spk and u.sentence == sent)
    segs = read_phn(utt.phn)
    n_samples = segs[-1][1]
    assert len(train.feats[0]) == 1 + (n_samples - 400) // 160
    folding = PhoneFolding(60)
    assert [folding.classes[i] for i in train.targets[0]] == [folding.to_train[p] for *_, p in segs]
    assert train.end_frames[0].tolist() == [
        min((b - 1) // 160, len(train.feats[0]) - 1) for _, b, _ in segs
    ]
    assert train.references[0] == folding.score_reference([p for *_, p in segs])
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape[0] == 2 and batch["y_end"].shape == batch["y"].shape
    assert dm.provenance()["speakers"] == {"train": 8, "dev": 2, "test": 2}


def test_lower_case_and_riff_copies_read_the_same(tmp_path):
    upper = write_stub_corpus(tmp_path / "TIMIT", n_train_speakers=2, seed=4)
    lower = write_stub_corpus(
        tmp_path / "timit", n_train_speakers=2, seed=4, lower_case=True, riff=True
    )
    assert (lower / "train").is_dir() and any(lower.rglob("sa1.wav.wav"))
    a = TIMITDataModule(root=str(upper), require_standard=False)
    b = TIMITDataModule(root=str(lower), require_standard=False)
    a.setup(), b.setup()
    assert a.splits["train"].uids == b.splits["train"].uids
    assert all(torch.equal(x, y) for x, y in zip(a.splits["train"].feats, b.splits["train"].feats))
    for p in lower.rglob("*.wav"):  # drop the SPHERE copies: the RIFF ones must do
        if not p.name.endswith(".wav.wav"):
            p.unlink()
    c = TIMITDataModule(root=str(lower), require_standard=False)
    c.setup()
    assert all(torch.equal(x, y) for x, y in zip(a.splits["dev"].feats, c.splits["dev"].feats))


def test_stub_datamodule_marks_itself(stub_root):
    dm = TIMITStubDataModule(root=str(stub_root), stub_seed=3, eval_subset=4)
    dm.setup()
    prov = dm.provenance()
    assert prov["stub"] is True and any("stub" in n for n in prov["notes"])
    assert prov["utterances"] == {"train": 32, "dev": 4, "test": 4}


def test_missing_corpus_fails_fast_naming_the_setting_and_the_stub(tmp_path):
    with pytest.raises(DatasetMissingError) as info:
        TIMITDataModule(root=str(tmp_path / "nowhere")).setup()
    assert "dataset.root" in str(info.value) and "dataset=timit_stub" in str(info.value)
    with pytest.raises(DatasetMissingError, match="dataset.root"):
        run_cfg(
            ["+experiment=transducer_timit", "tier=smoke", f"dataset.root={tmp_path}"], tmp_path
        )


# --- features --------------------------------------------------------------------------------
def test_filterbank_puts_a_tone_in_its_band():
    cfg = FilterbankConfig(delta_order=0)
    t = torch.arange(16000) / 16000
    feats = LogMelFilterbank(cfg)(torch.sin(2 * math.pi * 1000 * t) * 10000)
    assert feats.shape == (1 + (16000 - 400) // 160, 41)
    fb = mel_filterbank(40, 512, 16000, 20.0)
    centre = int(fb[:, round(1000 / (8000 / 256))].argmax())
    assert int(feats[50, :40].argmax()) == centre
    full = LogMelFilterbank(FilterbankConfig())(torch.sin(2 * math.pi * 1000 * t) * 10000)
    assert full.shape[1] == 123 and full[50:60, 41:].abs().max() < 0.1  # steady tone: flat deltas


# --- the experiment on the stub ------------------------------------------------------------
@pytest.mark.parametrize("arm", ["transducer", "ctc", "encdec", "transducer_raml"])
def test_transducer_timit_smoke_on_stub(tmp_path, stub_root, arm, capsys):
    record = run_cfg(
        ["+experiment=transducer_timit", "tier=smoke", "dataset=timit_stub", f"arm={arm}",
         f"dataset.root={stub_root}", "dataset.stub_seed=3", "logger=none"],
        tmp_path,
    )  # fmt: skip
    assert record.status == "completed", record.error
    assert record.stub is True and record.provenance.data["stub"] is True
    assert any("stub" in note for note in record.notes)
    assert 0.0 <= record.metrics["test/per"] and "val/per" in record.metrics
    assert record.provenance.data["speakers"] == {"train": 8, "dev": 2, "test": 2}
    out = capsys.readouterr()
    printed = out.out + out.err
    assert "STUB DATA" in printed and "test/per = " in printed
    assert all(line.endswith("(stub)") for line in printed.splitlines() if " = " in line)
