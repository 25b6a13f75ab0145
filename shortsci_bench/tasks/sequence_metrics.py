"""Edit distance and the error rates built on it (phone error rate, sequence error)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions from a to b."""
    if len(a) < len(b):
        a, b = b, a
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        diag, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (x != y))
    return row[-1]


def fold(seq: Sequence[int], score_map: torch.Tensor | None) -> list[int]:
    """Map training classes to scoring classes, dropping those mapped to -1."""
    if score_map is None:
        return list(seq)
    mapped = score_map[torch.as_tensor(list(seq), dtype=torch.long)].tolist() if len(seq) else []
    return [s for s in mapped if s >= 0]


def error_counts(
    hyps: Sequence[Sequence[int]], refs: Sequence[Sequence[int]]
) -> tuple[int, int, int]:
    """(total edit distance, total reference length, sequences not exactly right)."""
    edits = length = wrong = 0
    for h, r in zip(hyps, refs):
        d = edit_distance(h, r)
        edits += d
        length += len(r)
        wrong += int(list(h) != list(r))
    return edits, length, wrong
