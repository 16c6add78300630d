"""Flagged points → scored anomaly intervals (M2AD step 7), three constructions, all O(T).

- ``padding`` (the public M2AD code, the default): each flag i becomes ``[i - N, i + N]``,
  clipped; intervals that overlap or touch are merged.
- ``forward`` (the only grouping in the authors' history, ``group_anomalies`` in a deleted
  notebook): an interval runs from its first flag to its last flag + N, clipped; the next
  flag joins it while it falls at or before that end (the notebook's ``start <= t <= end``).
  With N = 0 adjacent flags stay apart: one interval per flag.
- ``none``: each maximal run of consecutive flags is one interval.

Every construction returns ``[(start, end, score), ...]`` sorted by start, ``end``
inclusive; an interval's score is the mean of ``scores`` over all its steps, NaN ignored
(NaN if every step is NaN).
"""
from __future__ import annotations

import numpy as np

__all__ = ["intervals", "forward_intervals", "run_intervals", "group_flags", "GROUPINGS"]

#: the interval constructions ``group_flags`` (and ``protocol.m2ad.grouping``) accept
GROUPINGS = ("padding", "forward", "none")


def _check(flags, scores) -> tuple[np.ndarray, np.ndarray]:
    flags = np.asarray(flags)
    scores = np.asarray(scores, dtype=np.float64)
    if flags.ndim != 1 or scores.ndim != 1 or flags.shape != scores.shape:
        raise ValueError(f"flags and scores must be 1-D of equal length, got {flags.shape} and {scores.shape}")
    return flags.astype(bool), scores


def _steps(value: int, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def _scored(starts: np.ndarray, ends: np.ndarray, scores: np.ndarray) -> list[tuple[int, int, float]]:
    """``(start, end, mean score)`` per interval; intervals sorted and disjoint (touching allowed).

    The cut points start_0 < end_0+1 <= start_1 < ... never decrease, so one reduceat gives
    every interval's sum at the even segments; an odd (gap) segment that is empty because two
    intervals touch yields a stray value, which is dropped with the gaps. A zero is appended
    for end + 1 == T."""
    if starts.size == 0:
        return []
    valid = ~np.isnan(scores)
    cuts = np.column_stack([starts, ends + 1]).ravel()
    sums = np.add.reduceat(np.append(np.where(valid, scores, 0.0), 0.0), cuts)[::2]
    counts = np.add.reduceat(np.append(valid.astype(np.int64), 0), cuts)[::2]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return [(int(s), int(e), float(v)) for s, e, v in zip(starts, ends, means)]


def _split(idx: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Group sorted flag indices: a new group starts where the gap to the previous flag
    exceeds ``max_gap``. Returns each group's first and last flag."""
    new = np.ones(idx.size, dtype=bool)
    new[1:] = np.diff(idx) > max_gap
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, idx.size - 1)
    return idx[first], idx[last]


def intervals(flags, scores, padding: int = 50) -> list[tuple[int, int, float]]:
    """Symmetric padding: each flagged index i becomes ``[i - padding, i + padding]``
    (inclusive), clipped to ``[0, T - 1]``; intervals that overlap or touch
    (``start <= prev_end + 1``) are merged.

    All padded intervals have the same length before clipping, so two neighbouring flags
    merge exactly when their gap is at most ``2 * padding + 1``."""
    flags, scores = _check(flags, scores)
    padding = _steps(padding, "padding")
    idx = np.flatnonzero(flags)
    if idx.size == 0:
        return []
    first, last = _split(idx, 2 * padding + 1)
    return _scored(np.maximum(first - padding, 0), np.minimum(last + padding, flags.size - 1), scores)


def forward_intervals(flags, scores, bridge: int) -> list[tuple[int, int, float]]:
    """Forward-only grouping: an interval runs from its first flag to its last flag +
    ``bridge`` (clipped to T - 1), and a flag joins it while it falls at or before that end.

    The end is always the last joined flag + bridge, so a flag starts a new interval
    exactly when its gap to the previous flag exceeds ``bridge``."""
    flags, scores = _check(flags, scores)
    bridge = _steps(bridge, "bridge")
    idx = np.flatnonzero(flags)
    if idx.size == 0:
        return []
    first, last = _split(idx, bridge)
    return _scored(first, np.minimum(last + bridge, flags.size - 1), scores)


def run_intervals(flags, scores) -> list[tuple[int, int, float]]:
    """No grouping: each maximal run of consecutive flags is one interval."""
    flags, scores = _check(flags, scores)
    idx = np.flatnonzero(flags)
    if idx.size == 0:
        return []
    first, last = _split(idx, 1)
    return _scored(first, last, scores)


def group_flags(flags, scores, grouping: str = "padding", padding: int = 50,
                bridge: int = 0) -> list[tuple[int, int, float]]:
    """The construction named by ``grouping`` (see the module doc): ``padding`` uses
    ``padding``, ``forward`` uses ``bridge``, ``none`` neither."""
    if grouping == "padding":
        return intervals(flags, scores, padding)
    if grouping == "forward":
        return forward_intervals(flags, scores, bridge)
    if grouping == "none":
        return run_intervals(flags, scores)
    raise ValueError(f"grouping must be one of {list(GROUPINGS)}, got {grouping!r}")
