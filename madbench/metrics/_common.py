"""Input checks and small array helpers shared by the metric modules."""
from __future__ import annotations

import numpy as np

__all__ = ["as_binary", "as_scores", "runs", "safe_div", "f_beta"]


def as_binary(x, name: str = "labels") -> np.ndarray:
    """A 1-D 0/1 vector as ``int8``; anything else is a ``ValueError``.

    Booleans and 0/1 ints or floats are accepted; other values are refused rather than
    silently thresholded, because a score passed where a label belongs is a caller bug.
    """
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.dtype == bool:
        return a.astype(np.int8)
    if a.size and not np.all((a == 0) | (a == 1)):
        raise ValueError(f"{name} must be binary (0/1 or bool)")
    return a.astype(np.int8)


def as_scores(x, n: int | None = None, name: str = "scores") -> np.ndarray:
    """A finite 1-D float64 vector (of length ``n`` when given).

    Missing steps (NaN) must be dropped by the caller before evaluation — see the package
    docstring — so a NaN or inf here is an error, never silently filled.
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if n is not None and a.size != n:
        raise ValueError(f"{name} has length {a.size}, labels have length {n}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contain NaN or inf; drop missing steps (and labels) before evaluating")
    return a


def binary_pair(labels, preds) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` and ``preds`` as 0/1 vectors of equal length (``as_binary`` each)."""
    y = as_binary(labels)
    p = as_binary(preds, "preds")
    if p.size != y.size:
        raise ValueError(f"preds have length {p.size}, labels have length {y.size}")
    return y, p


def runs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximal runs of non-zero values: ``(starts, ends)`` with ``ends`` inclusive."""
    b = np.asarray(x) != 0
    if b.size == 0:
        e = np.zeros(0, dtype=np.int64)
        return e, e
    d = np.diff(b.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return starts.astype(np.int64), ends.astype(np.int64)


def safe_div(num: float, den: float, empty: float) -> float:
    """``num / den``, or ``empty`` when ``den == 0``."""
    return float(num) / float(den) if den else float(empty)


def f_beta(precision: float, recall: float, beta: float) -> float:
    """F-beta from P and R: NaN if either is NaN, 0 if both are 0."""
    if np.isnan(precision) or np.isnan(recall):
        return float("nan")
    b2 = beta * beta
    den = b2 * precision + recall
    return float((1.0 + b2) * precision * recall / den) if den > 0 else 0.0
