"""Event-level counts as in M2AD / Orion's "contextual", non-weighted overlap.

* tp = truth events overlapped by at least one detected interval;
* fn = truth events overlapped by none;
* fp = detected intervals that overlap no truth event.

Intervals are inclusive index ranges ``(start, end)``; two intervals overlap when they
share at least one index, so a detection that touches a truth event only at the event's
last index is a hit, and one detected interval that spans two truth events gives two tp
and no fp. (Orion's ``_overlap`` tests ``(e0 - o1) * (e1 - o0) < 0`` on timestamps,
which calls two intervals sharing only an end point — or any detection of a one-step
event at its own index — "no overlap"; on inclusive step indices that is wrong, so the
shared-index rule is used here.)

Counts are meant to be summed over the entities of a dataset and turned into scores once
with :func:`event_scores`. Its 0/0 conventions follow :mod:`madbench.metrics.point`:
precision 0 when nothing was detected, recall NaN when there was no truth event, F-beta
NaN if either is NaN and 0 when both are 0.
"""
from __future__ import annotations

import numpy as np

from ._common import binary_pair, f_beta, runs, safe_div

__all__ = ["event_counts", "event_counts_intervals", "event_scores"]


def _as_intervals(iv, what: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(iv, dtype=np.int64).reshape(-1, 2) if len(iv) else np.zeros((0, 2), dtype=np.int64)
    if np.any(a[:, 1] < a[:, 0]):
        raise ValueError(f"{what} intervals must have start <= end (inclusive ends)")
    return a[:, 0], a[:, 1]


def _hit(q_start, q_end, o_start, o_end) -> np.ndarray:
    """For each query interval: does any of the other intervals share an index with it?"""
    if o_start.size == 0:
        return np.zeros(q_start.size, dtype=bool)
    order = np.argsort(o_start, kind="stable")
    s, run_max_end = o_start[order], np.maximum.accumulate(o_end[order])
    n = np.searchsorted(s, q_end, side="right")  # others starting at or before the query's end
    return (n > 0) & (run_max_end[np.maximum(n - 1, 0)] >= q_start)


def event_counts_intervals(truth, detected) -> tuple[int, int, int]:
    """``(tp, fp, fn)`` from lists of inclusive ``(start, end)`` intervals.

    Neither list needs to be sorted or disjoint; each listed interval counts once.
    """
    ts, te = _as_intervals(truth, "truth")
    ds, de = _as_intervals(detected, "detected")
    found = _hit(ts, te, ds, de)
    useful = _hit(ds, de, ts, te)
    tp = int(found.sum())
    return tp, int(ds.size - useful.sum()), int(ts.size - tp)


def event_counts(labels, preds) -> tuple[int, int, int]:
    """``(tp, fp, fn)`` between the runs of 1 in ``labels`` and in ``preds``."""
    y, p = binary_pair(labels, preds)
    ts, te = runs(y)
    ds, de = runs(p)
    return event_counts_intervals(np.column_stack([ts, te]), np.column_stack([ds, de]))


def event_scores(tp, fp, fn) -> dict:
    """``{"event_precision", "event_recall", "event_f1", "event_f05"}`` from (summed) counts."""
    precision = safe_div(tp, tp + fp, 0.0)
    recall = safe_div(tp, tp + fn, float("nan"))
    return {"event_precision": precision, "event_recall": recall,
            "event_f1": f_beta(precision, recall, 1.0), "event_f05": f_beta(precision, recall, 0.5)}
