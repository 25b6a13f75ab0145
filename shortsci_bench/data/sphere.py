"""Reading (and, for the stub corpus, writing) TIMIT's audio files.

TIMIT as the LDC ships it (LDC93S1) stores each utterance as a NIST SPHERE file: an ASCII
header that starts with `NIST_1A`, gives its own length on the second line (1024 bytes in
TIMIT), lists `name -type value` fields and ends with `end_head`; 16-bit linear PCM
samples follow. Some redistributed copies add a RIFF/WAVE conversion beside each file
(`SA1.WAV.wav`); both are read here, chosen by the file's magic bytes, not its name.
Shorten-compressed SPHERE files (`sample_coding -s… pcm,embedded-shorten…`) are refused
with a message: decompress them first (e.g. with `sph2pipe`).
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPHERE_MAGIC = b"NIST_1A"
RIFF_MAGIC = b"RIFF"


class AudioFormatError(ValueError):
    """A file that is neither 16-bit PCM NIST SPHERE nor 16-bit PCM RIFF/WAVE."""


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray  # int16, one channel
    sample_rate: int
    header: dict[str, object]  # the SPHERE fields (empty for RIFF)


def parse_sphere_header(blob: bytes) -> tuple[dict[str, object], int]:
    """Return (fields, header_size) of a NIST SPHERE header at the start of `blob`."""
    if not blob.startswith(SPHERE_MAGIC):
        raise AudioFormatError("not a NIST SPHERE file (no NIST_1A magic)")
    lines = blob[:64].split(b"\n")
    try:
        size = int(lines[1].strip())
    except (IndexError, ValueError):
        raise AudioFormatError("NIST SPHERE header: second line is not the header size") from None
    if size < 16 or size > len(blob):
        raise AudioFormatError(f"NIST SPHERE header size {size} does not fit the file")
    fields: dict[str, object] = {}
    for raw in blob[:size].split(b"\n")[2:]:
        line = raw.decode("ascii", errors="replace").strip()
        if not line or line.startswith(";"):
            continue
        if line == "end_head":
            break
        parts = line.split(None, 2)
        if len(parts) < 3:
            continue
        name, kind, value = parts
        if kind == "-i":
            fields[name] = int(value)
        elif kind == "-r":
            fields[name] = float(value)
        else:  # -sN: a string of N characters
            fields[name] = value
    else:
        raise AudioFormatError("NIST SPHERE header has no end_head line")
    return fields, size


def read_sphere(path: str | Path) -> Audio:
    """Read a 16-bit PCM NIST SPHERE file (little- or big-endian samples)."""
    blob = Path(path).read_bytes()
    fields, size = parse_sphere_header(blob)
    coding = str(fields.get("sample_coding", "pcm"))
    if coding != "pcm":
        raise AudioFormatError(
            f"{path}: sample_coding {coding!r} is not plain PCM; decompress it first "
            "(e.g. `sph2pipe -f wav`) or use the RIFF copy"
        )
    if int(fields.get("sample_n_bytes", 2)) != 2:
        raise AudioFormatError(f"{path}: only 16-bit samples are supported")
    if int(fields.get("channel_count", 1)) != 1:
        raise AudioFormatError(f"{path}: only one channel is supported")
    order = str(fields.get("sample_byte_format", "01"))
    dtype = {"01": "<i2", "10": ">i2", "1": "<i2"}.get(order)
    if dtype is None:
        raise AudioFormatError(f"{path}: unknown sample_byte_format {order!r}")
    data = np.frombuffer(blob, dtype=dtype, offset=size)
    count = fields.get("sample_count")
    if count is not None:
        if int(count) > len(data):
            raise AudioFormatError(f"{path}: header says {count} samples, file holds {len(data)}")
        data = data[: int(count)]
    return Audio(data.astype(np.int16), int(fields.get("sample_rate", 16000)), fields)


def read_riff(path: str | Path) -> Audio:
    """Read a 16-bit PCM mono RIFF/WAVE file with the standard library."""
    with wave.open(str(path), "rb") as fh:
        if fh.getsampwidth() != 2 or fh.getnchannels() != 1:
            raise AudioFormatError(f"{path}: only 16-bit mono RIFF/WAVE is supported")
        rate = fh.getframerate()
        data = np.frombuffer(fh.readframes(fh.getnframes()), dtype="<i2")
    return Audio(data.astype(np.int16), rate, {})


def read_audio(path: str | Path) -> Audio:
    """Read SPHERE or RIFF, whichever the file's first bytes say it is."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(SPHERE_MAGIC):
        return read_sphere(path)
    if head.startswith(RIFF_MAGIC):
        return read_riff(path)
    raise AudioFormatError(f"{path}: neither NIST SPHERE (NIST_1A) nor RIFF/WAVE")


def sphere_bytes(samples: np.ndarray, sample_rate: int = 16000, **fields: object) -> bytes:
    """A TIMIT-style NIST SPHERE file: 1024-byte header, little-endian 16-bit PCM."""
    samples = np.asarray(samples, dtype=np.int16)
    header = {
        "database_id": "TIMIT",
        "database_version": "1.0",
        **fields,
        "channel_count": 1,
        "sample_count": len(samples),
        "sample_rate": sample_rate,
        "sample_min": int(samples.min()) if len(samples) else 0,
        "sample_max": int(samples.max()) if len(samples) else 0,
        "sample_n_bytes": 2,
        "sample_byte_format": "01",
        "sample_sig_bits": 16,
    }
    lines = ["NIST_1A", "   1024"]
    for name, value in header.items():
        if isinstance(value, int):
            lines.append(f"{name} -i {value}")
        else:
            lines.append(f"{name} -s{len(str(value))} {value}")
    lines.append("end_head")
    text = ("\n".join(lines) + "\n").encode("ascii")
    if len(text) > 1024:
        raise ValueError("SPHERE header longer than 1024 bytes")
    return text.ljust(1024, b" ") + samples.astype("<i2").tobytes()


def write_riff(path: str | Path, samples: np.ndarray, sample_rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(sample_rate)
        fh.writeframes(np.asarray(samples, dtype="<i2").tobytes())
