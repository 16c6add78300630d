"""Flagged points → padded, merged anomaly intervals (M2AD step 7)."""
from __future__ import annotations

import numpy as np

__all__ = ["intervals"]


def intervals(flags, scores, padding: int = 50) -> list[tuple[int, int, float]]:
    """Turn a boolean flag per step into scored intervals, in O(T).

    Each flagged index i becomes ``[i - padding, i + padding]`` (inclusive), clipped to
    ``[0, T - 1]``. Intervals that overlap or touch (``start <= prev_end + 1``) are merged.
    An interval's score is the mean of ``scores`` over all its steps, NaN ignored (NaN if
    every step is NaN). Returns ``[(start, end, score), ...]`` sorted by start, with
    ``end`` inclusive.

    All intervals have the same length before clipping, so sorted starts give sorted
    ends and a merge only ever compares neighbours.
    """
    flags = np.asarray(flags)
    scores = np.asarray(scores, dtype=np.float64)
    if flags.ndim != 1 or scores.ndim != 1 or flags.shape != scores.shape:
        raise ValueError(f"flags and scores must be 1-D of equal length, got {flags.shape} and {scores.shape}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    n = flags.size
    idx = np.flatnonzero(flags.astype(bool))
    if idx.size == 0:
        return []
    starts = np.maximum(idx - padding, 0)
    ends = np.minimum(idx + padding, n - 1)
    new = np.ones(idx.size, dtype=bool)
    new[1:] = starts[1:] > ends[:-1] + 1
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, idx.size - 1)
    m_start, m_end = starts[first], ends[last]

    # Merged intervals are disjoint and separated by at least one step, so the cut
    # points start_0 < end_0+1 < start_1 < ... are strictly increasing: one reduceat
    # gives every interval's sum (every other segment), with a zero appended for end+1 == T.
    valid = ~np.isnan(scores)
    cuts = np.column_stack([m_start, m_end + 1]).ravel()
    sums = np.add.reduceat(np.append(np.where(valid, scores, 0.0), 0.0), cuts)[::2]
    counts = np.add.reduceat(np.append(valid.astype(np.int64), 0), cuts)[::2]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return [(int(s), int(e), float(v)) for s, e, v in zip(m_start, m_end, means)]
