"""Log-mel filterbank features in plain torch (torchaudio does not install beside our torch).

Jaitly et al. (2016), section 4.2: "Log Mel filterbanks were computed every 10ms as inputs".
The rest is the usual TIMIT front end (ours where the paper is silent): 25 ms Hamming
windows every 10 ms on pre-emphasised (0.97) 16 kHz audio, a 512-point FFT, 40 triangular
filters on the HTK mel scale from 20 Hz to 8 kHz, log power with a floor, plus the log
frame energy (41 values), then first and second differences (regression over +-2 frames)
for 123 values a frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def hz_to_mel(hz: torch.Tensor | float) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz, dtype=torch.float64) / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(
    n_mels: int, n_fft: int, sample_rate: int, f_min: float = 20.0, f_max: float | None = None
) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters, equally spaced on the mel scale."""
    f_max = f_max or sample_rate / 2
    mels = torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2)
    edges = mel_to_hz(mels.double())
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


def deltas(feats: torch.Tensor, window: int = 2) -> torch.Tensor:
    """Regression differences over +-`window` frames (edges repeated), as in HTK."""
    t = feats.shape[0]
    padded = torch.cat([feats[:1].expand(window, -1), feats, feats[-1:].expand(window, -1)])
    num = sum(n * (padded[window + n : window + n + t] - padded[window - n : window - n + t])
              for n in range(1, window + 1))  # fmt: skip
    return num / (2 * sum(n * n for n in range(1, window + 1)))


@dataclass(frozen=True)
class FilterbankConfig:
    sample_rate: int = 16000
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    n_mels: int = 40
    energy: bool = True
    delta_order: int = 2  # 0: statics only, 1: + deltas, 2: + delta-deltas
    preemphasis: float = 0.97
    f_min: float = 20.0

    @property
    def win(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def hop(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def dim(self) -> int:
        return (self.n_mels + int(self.energy)) * (1 + self.delta_order)

    def n_frames(self, n_samples: int) -> int:
        return 1 + max(0, n_samples - self.win) // self.hop

    def frame_of_sample(self, sample: int) -> int:
        """The last frame whose window starts at or before `sample`."""
        return max(0, (sample - 1) // self.hop)


class LogMelFilterbank:
    """Callable: int16 or float samples (n,) -> features (frames, cfg.dim)."""

    def __init__(self, cfg: FilterbankConfig = FilterbankConfig()):
        self.cfg = cfg
        self.window = torch.hamming_window(cfg.win, periodic=False)
        self.fbank = mel_filterbank(cfg.n_mels, cfg.n_fft, cfg.sample_rate, cfg.f_min)

    def __call__(self, samples: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        x = samples.float()
        if x.abs().max() > 2.0:  # int16 range -> [-1, 1]
            x = x / 32768.0
        if len(x) < cfg.win:
            x = torch.nn.functional.pad(x, (0, cfg.win - len(x)))
        if cfg.preemphasis:
            x = torch.cat([x[:1], x[1:] - cfg.preemphasis * x[:-1]])
        frames = x.unfold(0, cfg.win, cfg.hop) * self.window  # (T, win)
        power = torch.fft.rfft(frames, n=cfg.n_fft).abs().pow(2)  # (T, n_fft/2+1)
        floor = 1e-10
        statics = [torch.log(torch.clamp(power @ self.fbank.T, min=floor))]
        if cfg.energy:
            statics.append(torch.log(torch.clamp(frames.pow(2).sum(-1, keepdim=True), min=floor)))
        feats = torch.cat(statics, dim=-1)
        out = [feats]
        for _ in range(cfg.delta_order):
            out.append(deltas(out[-1]))
        return torch.cat(out, dim=-1)


def normalise(
    feats: list[torch.Tensor], mean: torch.Tensor, std: torch.Tensor
) -> list[torch.Tensor]:
    return [(f - mean) / std for f in feats]


def moments(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and standard deviation over all frames (float64 sums)."""
    total = sum(f.double().sum(0) for f in feats)
    count = sum(f.shape[0] for f in feats)
    mean = total / count
    var = sum(((f.double() - mean) ** 2).sum(0) for f in feats) / max(1, count - 1)
    std = torch.sqrt(torch.clamp(var, min=1e-12))
    return mean.float(), std.float()


__all__ = [
    "FilterbankConfig",
    "LogMelFilterbank",
    "deltas",
    "mel_filterbank",
    "moments",
    "normalise",
]
