"""A character-level language-modelling corpus that every install of this project holds.

Wu et al., "On Multiplicative Integration with Recurrent Neural Networks" (NIPS 2016),
report bits per character on Penn Treebank, text8 and enwik8, none of which is in our
offline mirror. The corpus here is the change log of the pinned `lightning==2.6.6`
dependency (`lightning/pytorch/CHANGELOG.md`, Apache-2.0): about 0.5 MB of English
technical prose that ships inside the package, so it is byte-identical wherever the
project installs, needs no download and is not the project's own input (the summaries).
No public-domain prose ships in the installed packages (none of them carries a Project
Gutenberg text). Pull-request references (`([#123](https://...))`; 14 irregular ones stay) and link targets are
stripped (they are 47% of the bytes and mostly digits and a repeated URL), leaving
269,247 characters of 93 symbols. Both the file and the cleaned text are pinned by
SHA-256: a different file fails loudly.

Splits are contiguous: the first 90% trains, the next 5% validates, the last 5% tests.
Training batch i holds `batch_size` windows of `seq_len + 1` characters at offsets drawn
from a generator seeded by (seed, i), so resume is exact; evaluation reads the whole
split as `eval_rows` contiguous rows, each run through the model from a zero state.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from importlib import resources

import lightning as L
import torch

from shortsci_bench.data.batches import EvalBatches, GeneratedSteps, start_at_global_step

SOURCE_PACKAGE, SOURCE_FILE = "lightning.pytorch", "CHANGELOG.md"
SOURCE_SHA256 = "ab3aa68820d81533f223bbd724d086669fb173514e323aa94782e8dad4405ed3"
CLEANED_SHA256 = "adf5aa1c80431a84040ade5de3d29ca714677566da4298930bae8e9496cb1bb7"
SPLITS = ("train", "val", "test")
FRACTIONS = {"train": 0.90, "val": 0.05, "test": 0.05}

# `([#21188](https://github.com/...))`, possibly several references in one pair of brackets
_PR_REFS = re.compile(r"\s*\(\[#[^\]]*\]\([^)]*\)(,\s*\[#[^\]]*\]\([^)]*\))*\)")
_LINK_TARGET = re.compile(r"\]\(https?://[^)]*\)")


def clean(text: str) -> str:
    """Drop pull-request references and link targets (keeping the link's words)."""
    return _LINK_TARGET.sub("]", _PR_REFS.sub("", text))


def read_source() -> bytes:
    """The change log's bytes, checked against its pin."""
    raw = (resources.files(SOURCE_PACKAGE) / SOURCE_FILE).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SOURCE_SHA256:
        raise RuntimeError(
            f"{SOURCE_PACKAGE}/{SOURCE_FILE} has SHA-256 {digest}, but {SOURCE_SHA256} is "
            "pinned: install the pinned lightning==2.6.6 (make install)"
        )
    return raw


def load_corpus() -> tuple[str, str]:
    """(cleaned text, its SHA-256)."""
    text = clean(read_source().decode("utf-8"))
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest()


def encode(text: str) -> tuple[torch.Tensor, str]:
    """Character ids (int64) over the sorted alphabet of `text`, and the alphabet."""
    alphabet = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(alphabet)}
    return torch.tensor([index[c] for c in text], dtype=torch.int64), alphabet


def split(ids: torch.Tensor) -> dict[str, torch.Tensor]:
    n = len(ids)
    n_train, n_val = int(n * FRACTIONS["train"]), int(n * FRACTIONS["val"])
    return {
        "train": ids[:n_train],
        "val": ids[n_train : n_train + n_val],
        "test": ids[n_train + n_val :],
    }


def as_rows(ids: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets), each (rows, L): `rows` contiguous stretches of the split, the
    targets shifted by one character; the tail that does not fill a row is dropped."""
    length = (len(ids) - 1) // rows
    x = ids[: rows * length].view(rows, length)
    y = ids[1 : rows * length + 1].view(rows, length)
    return x, y


def random_windows(
    ids: torch.Tensor, batch_size: int, seq_len: int, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` windows (inputs, targets) of `seq_len` characters at seeded offsets."""
    starts = torch.randint(0, len(ids) - seq_len - 1, (batch_size,), generator=g)
    idx = starts[:, None] + torch.arange(seq_len + 1)[None, :]
    windows = ids[idx.to(ids.device)]
    return windows[:, :-1], windows[:, 1:]


class CharCorpusDataModule(L.LightningDataModule):
    """The pinned change-log corpus as character ids; see the module docstring."""

    name = "lightning_changelog_chars"

    def __init__(
        self,
        batch_size: int = 32,
        seq_len: int = 100,
        eval_rows: int = 10,
        steps: int = 1000,
        seed: int = 0,
        eval_chars: int | None = None,
    ):
        super().__init__()
        self.batch_size, self.seq_len, self.eval_rows = batch_size, seq_len, eval_rows
        self.steps, self.seed, self.eval_chars = steps, seed, eval_chars
        self.splits: dict[str, torch.Tensor] = {}
        self.alphabet = ""
        self.text_sha256 = ""
        self.load_seconds = 0.0

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        t0 = time.perf_counter()
        text, self.text_sha256 = load_corpus()
        if self.text_sha256 != CLEANED_SHA256:
            raise RuntimeError(
                f"cleaned corpus has SHA-256 {self.text_sha256}, but {CLEANED_SHA256} is pinned: "
                "data.clean() changed"
            )
        ids, self.alphabet = encode(text)
        self.splits = split(ids)
        self.load_seconds = time.perf_counter() - t0

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def train_dataloader(self) -> GeneratedSteps:
        ids = self.splits["train"].to(self._device())
        trainer = getattr(self, "trainer", None)
        return GeneratedSteps(
            lambda g: random_windows(ids, self.batch_size, self.seq_len, g),
            self.steps,
            self.seed,
            start_step=start_at_global_step(trainer),
        )

    def eval_rows_of(self, split_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.splits[split_name]
        if self.eval_chars:
            ids = ids[: self.eval_chars + 1]
        x, y = as_rows(ids, self.eval_rows)
        return x.to(self._device()), y.to(self._device())

    def val_dataloader(self) -> EvalBatches:
        # One batch: all rows at once (the task runs each row from a zero state).
        return EvalBatches(self.eval_rows_of("val"), self.eval_rows)

    def test_dataloader(self) -> EvalBatches:
        return EvalBatches(self.eval_rows_of("test"), self.eval_rows)

    def provenance(self) -> dict:
        sizes = {k: len(v) for k, v in self.splits.items()}
        return {
            "dataset": self.name,
            "source": f"installed package file {SOURCE_PACKAGE}/{SOURCE_FILE} (lightning==2.6.6, "
            "Apache-2.0), cleaned by experiments.multiplicative_integration.data.clean",
            "checksums": {"source.sha256": SOURCE_SHA256, "cleaned.sha256": self.text_sha256},
            "checksums_pinned": {"source": True, "cleaned": True},
            "vocab_size": self.vocab_size,
            "sizes": sizes,
            "unigram_bpc_train": unigram_bpc(self.splits["train"]) if self.splits else None,
            "eval_chars": self.eval_chars,
        }


def unigram_bpc(ids: torch.Tensor) -> float:
    """Entropy of the character frequencies in bits: what a model without context scores."""
    p = torch.bincount(ids).double()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum() / math.log(2))
