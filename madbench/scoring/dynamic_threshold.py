"""Nonparametric dynamic thresholding (Hundman et al., "Detecting Spacecraft Anomalies Using
LSTMs and Nonparametric Dynamic Thresholding", KDD 2018), as Orion's
``find_anomalies`` runs it (sintel-dev/Orion, ``orion/primitives/timeseries_anomalies.py``,
the thresholding of every reconstruction and forecast pipeline behind the M2AD paper's
Table 2 baselines; docs/m2ad_table2_pipelines.md).

The steps, on a 1-D array of errors (one per scored time step):

1. **Smoothing** of the raw errors ``|y - ŷ|``: an EWMA with span ``s`` (Orion's
   ``regression_errors``, span = 1% of the steps; telemanom's span is 105) or a centred
   rolling mean (Orion's ``reconstruction_errors``, at most 200 steps).
2. **Windows**: the errors are cut into windows of ``window_size`` steps moved by
   ``window_step`` (the last windows are cut short at the end of the series); each window
   gets its own threshold ε.
3. **ε selection** in a window with mean μ and std σ: ε = μ + zσ, with z minimising the
   negative of the paper's criterion

       (Δμ/μ + Δσ/σ) / (|e_a| + |E_seq|²)

   where Δμ, Δσ are the drops of the mean and std when the errors above ε are removed,
   |e_a| the number of errors above ε and |E_seq| the number of runs of them. Orion
   searches with ``scipy.optimize.fmin`` started at every integer z in ``z_range``
   (``search="fmin"``); telemanom scans z on a grid of 0.5 (``search="grid"``). The fixed
   rule ε = μ + kσ (``fixed_threshold``, k = 4) is what Orion's LSTM-DT, LSTM-AE and VAE
   pipelines actually use (their JSONs set ``fixed_threshold: true``).
4. **Sequences**: every error above ε is padded by ``anomaly_padding`` steps each side and
   the runs of padded steps are the window's anomalous sequences; the largest error
   outside them is kept as the non-anomalous maximum.
5. **Pruning** (``min_percent``, the paper's p): the sequences' maximum errors and the
   non-anomalous maximum are sorted in descending order; the drop from each to the next,
   as a fraction of it, is compared with ``min_percent``, and only the sequences ranked
   down to the last drop that reaches it are kept (none when no drop reaches it).
6. **Merge**: sequences from every window that overlap or touch are merged; a sequence's
   score is (max error − ε) / (μ + σ), merged ones average by length.

``percentile_anomalies`` is the other rule of Orion's pipelines, its Anomaly Transformer's:
a percentile of the train and test scores, then the same padding, pruning and merging.

All functions are pure and return numpy values; indices are positions in the error array.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["ewma", "rolling_mean", "z_cost", "find_threshold", "fixed_threshold", "find_sequences", "prune",
           "merge_sequences", "window_sequences", "find_anomalies", "percentile_anomalies", "resolve_size", "SEARCHES"]

#: how ε is searched: Orion's Nelder-Mead from integer starts, or telemanom's grid
SEARCHES = ("fmin", "grid")


# -- 1. smoothing -------------------------------------------------------------------------------
def ewma(errors, span: int) -> np.ndarray:
    """``pandas.Series.ewm(span=span).mean()`` (adjust=True): Orion's ``regression_errors``
    and telemanom's smoothing."""
    return pd.Series(np.asarray(errors, dtype=np.float64)).ewm(span=span).mean().to_numpy()


def rolling_mean(errors, window: int) -> np.ndarray:
    """Centred rolling mean with ``min_periods = window // 2`` (Orion's
    ``reconstruction_errors``; edge steps average a truncated window)."""
    return (pd.Series(np.asarray(errors, dtype=np.float64))
            .rolling(window, center=True, min_periods=window // 2).mean().to_numpy())


def resolve_size(value, n: int, cap: int | None = None) -> int:
    """A size given as a ratio of ``n`` (float < 1: ``int(n * value)``, at least 1, at most
    ``cap``) or in steps (int)."""
    if isinstance(value, float) and value < 1.0:
        size = max(1, int(n * value))
        return min(size, cap) if cap else size
    return int(value)


# -- 3. ε selection -----------------------------------------------------------------------------
def _runs(above: np.ndarray) -> int:
    """Number of maximal runs of True."""
    if above.size == 0:
        return 0
    return int(above[0]) + int(np.count_nonzero(above[1:] & ~above[:-1]))


def z_cost(z, errors: np.ndarray, mean: float, std: float) -> float:
    """The negated criterion for ε = mean + z·std (lower is better; ``inf`` when nothing is
    above ε, where the criterion's denominator is 0)."""
    z = float(np.ravel(z)[0])
    epsilon = mean + z * std
    below = errors[errors <= epsilon]
    if below.size:
        delta_mean, delta_std = mean - below.mean(), std - below.std()
    else:
        delta_mean = delta_std = 0.0
    above = errors > epsilon
    denominator = int(above.sum()) + _runs(above) ** 2
    if denominator == 0:
        return math.inf
    return -(delta_mean / mean + delta_std / std) / denominator


def find_threshold(errors, z_range=(0, 12), search: str = "fmin", z_step: float = 0.5) -> float:
    """ε = μ + zσ with z minimising ``z_cost``.

    ``fmin`` (Orion): ``scipy.optimize.fmin`` from every integer start in
    ``range(*z_range)``; the lowest cost wins, the first on ties. ``grid`` (telemanom):
    every z in ``arange(z_range[0], z_range[1], z_step)``; the largest z on ties, as
    telemanom's ``>=``. A window with zero spread has ε = μ (nothing is strictly above)."""
    errors = np.asarray(errors, dtype=np.float64)
    mean, std = float(errors.mean()), float(errors.std())
    if not std > 0 or not mean > 0:
        return mean
    if search == "grid":
        zs = np.arange(z_range[0], z_range[1], z_step)
        costs = np.array([z_cost(z, errors, mean, std) for z in zs])
        if not np.isfinite(costs).any():
            return mean + float(z_range[0]) * std
        best = np.flatnonzero(costs == costs.min())[-1]
        return mean + float(zs[best]) * std
    if search != "fmin":
        raise ValueError(f"search must be one of {list(SEARCHES)}, got {search!r}")
    from scipy.optimize import fmin

    best_z, best_cost = float(z_range[0]), math.inf
    for z0 in range(int(z_range[0]), int(z_range[1])):
        # a simplex whose costs are all inf (nothing above epsilon) makes fmin compare inf - inf
        with np.errstate(invalid="ignore"):
            z, cost = fmin(z_cost, z0, args=(errors, mean, std), full_output=True, disp=False)[:2]
        if cost < best_cost:
            best_z, best_cost = float(z[0]), cost
    return mean + best_z * std


def fixed_threshold(errors, k: float = 4.0) -> float:
    """ε = μ + kσ of the window (Orion's ``fixed_threshold``)."""
    errors = np.asarray(errors, dtype=np.float64)
    return float(errors.mean() + k * errors.std())


# -- 4. sequences -------------------------------------------------------------------------------
def find_sequences(errors, epsilon: float, padding: int) -> tuple[np.ndarray, float]:
    """(sequences [n, 2] as inclusive (start, end), the largest error outside them).

    Every error above ε is widened to ``[i - padding, i + padding]`` (clipped); the
    sequences are the runs of widened steps. The non-anomalous maximum is 0 when every
    step is inside a sequence."""
    errors = np.asarray(errors, dtype=np.float64)
    n = errors.size
    idx = np.flatnonzero(errors > epsilon)
    covered = np.zeros(n + 1, dtype=np.int64)
    np.add.at(covered, np.maximum(idx - padding, 0), 1)
    np.add.at(covered, np.minimum(idx + padding + 1, n), -1)
    inside = np.cumsum(covered[:n]) > 0
    edges = np.diff(np.concatenate([[0], inside.astype(np.int8), [0]]))
    seqs = np.column_stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1])
    max_below = float(errors[~inside].max()) if (~inside).any() else 0.0
    return seqs.astype(np.int64), max_below


# -- 5. pruning ---------------------------------------------------------------------------------
def prune(max_errors, max_below: float, min_percent: float) -> np.ndarray:
    """Indices (into ``max_errors``) of the sequences that survive pruning.

    The sequence maxima and ``max_below`` are sorted in descending order (stable), and
    each value's drop to the next, ``(a - b) / a``, is compared with ``min_percent``. The
    sequences ranked down to the last drop of at least ``min_percent`` are kept; if no
    drop reaches it, none is kept. The pruned ones are therefore the sequences whose
    maxima are, step by step, within ``min_percent`` of the next lower value (the largest
    normal error at the end of the chain)."""
    max_errors = np.asarray(max_errors, dtype=np.float64)
    if max_errors.size == 0:
        return np.zeros(0, dtype=np.int64)
    values = np.append(max_errors, max_below)
    order = np.argsort(-values, kind="stable")
    ranked = values[order]
    with np.errstate(divide="ignore", invalid="ignore"):
        increase = (ranked[:-1] - ranked[1:]) / ranked[:-1]
    big = np.flatnonzero(increase >= min_percent)
    if big.size == 0:
        return np.zeros(0, dtype=np.int64)
    kept = order[: big[-1] + 1]
    # the non-anomalous maximum (position len(max_errors)) ranks below every sequence maximum
    return np.sort(kept[kept < max_errors.size])


# -- 6. merge -----------------------------------------------------------------------------------
def merge_sequences(sequences) -> list[tuple[int, int, float]]:
    """Merge (start, end, score) sequences that overlap or touch (start <= previous end +
    1); a merged score is the length-weighted mean of its parts. Orion weights by
    ``end - start``, which is 0 for a one-step sequence (and divides by zero when every
    part has one step); madbench weights by the number of steps, ``end - start + 1``."""
    out: list[list] = []
    weights: list[list[float]] = []
    scores: list[list[float]] = []
    for s, e, sc in sorted(((int(a), int(b), float(c)) for a, b, c in sequences), key=lambda t: t[0]):
        if out and s <= out[-1][1] + 1:
            scores[-1].append(sc)
            weights[-1].append(e - s + 1)
            out[-1][1] = max(out[-1][1], e)
            out[-1][2] = float(np.average(scores[-1], weights=weights[-1]))
        else:
            out.append([s, e, sc])
            scores.append([sc])
            weights.append([e - s + 1])
    return [(a, b, c) for a, b, c in out]


# -- the loop -----------------------------------------------------------------------------------
def window_sequences(window, *, start: int = 0, z_range=(0, 12), search: str = "fmin", fixed: bool = False,
                     k: float = 4.0, padding: int = 50, min_percent: float = 0.13) -> list[tuple[int, int, float]]:
    """One window's pruned sequences as (start, end, score), offset by ``start``."""
    window = np.asarray(window, dtype=np.float64)
    eps = fixed_threshold(window, k) if fixed else find_threshold(window, z_range, search)
    seqs, max_below = find_sequences(window, eps, padding)
    if not len(seqs):
        return []
    maxima = np.array([window[a:b + 1].max() for a, b in seqs])
    keep = prune(maxima, max_below, min_percent)
    denominator = window.mean() + window.std()
    return [(int(seqs[i, 0]) + start, int(seqs[i, 1]) + start, float((maxima[i] - eps) / denominator))
            for i in keep]


def find_anomalies(errors, *, window_size: int | None = None, window_step: int | None = None, z_range=(0, 12),
                   search: str = "fmin", fixed: bool = False, k: float = 4.0, padding: int = 50,
                   min_percent: float = 0.13, lower_threshold: bool = False) -> list[tuple[int, int, float]]:
    """Anomalous intervals (start, end inclusive, score) of ``errors`` [n] (finite).

    Windows of ``window_size`` steps (all steps when None) start every ``window_step``
    steps (``window_size`` when None), until a window reaches the end, as Orion's loop:
    ``while end < n: end = start + window_size; ...; start += window_step``.
    ``lower_threshold`` also searches the window flipped around its mean (unusually low
    errors), as telemanom always does and Orion does on request."""
    errors = np.asarray(errors, dtype=np.float64)
    n = errors.size
    if n == 0:
        return []
    size = int(window_size or n)
    step = int(window_step or size)
    opts = dict(z_range=z_range, search=search, fixed=fixed, k=k, padding=padding, min_percent=min_percent)
    found: list[tuple[int, int, float]] = []
    start, end = 0, 0
    while end < n:
        end = start + size
        window = errors[start:end]
        found += window_sequences(window, start=start, **opts)
        if lower_threshold:
            mean = window.mean()
            found += window_sequences(mean - (window - mean), start=start, **opts)
        start += step
    return merge_sequences(found)


# -- the percentile rule of Orion's Anomaly Transformer pipeline ------------------------------
def percentile_anomalies(scores, reference_scores, *, anomaly_ratio: float = 1.0, padding: int = 50,
                         min_percent: float = 0.1, reference_quirks: bool = False) -> list[tuple[int, int, float]]:
    """Orion's ``anomaly_transformer.threshold_anomalies``: the threshold is the
    ``100 - anomaly_ratio`` percentile of ``reference_scores`` (the train split's) and
    ``scores`` together; each run of scores above it is padded by ``padding`` steps each
    side; the intervals are pruned (``prune``) and merged.

    The reference prunes on each interval's *mean* score and without the largest normal
    score at the end of the chain, so the lowest interval is always dropped, and a single
    interval too (``reference_quirks=True``). By default an interval is ranked by its
    maximum and the chain ends at the largest score outside every interval, as
    ``find_anomalies`` does. The interval score is the mean score over it in both."""
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.size
    if n == 0:
        return []
    combined = np.concatenate([np.asarray(reference_scores, dtype=np.float64), scores])
    threshold = np.percentile(combined, 100 - anomaly_ratio)
    above = scores > threshold
    edges = np.diff(np.concatenate([[0], above.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)  # stop exclusive
    runs = [(max(0, a - padding), min(b + padding, n) - 1) for a, b in zip(starts, stops)]
    if not runs:
        return []
    means = np.array([scores[a:b + 1].mean() for a, b in runs])
    if reference_quirks:
        order = np.argsort(-means, kind="stable")
        ranked = means[order]
        with np.errstate(divide="ignore", invalid="ignore"):
            increase = (ranked[:-1] - ranked[1:]) / ranked[:-1]
        big = np.flatnonzero(increase >= min_percent)
        keep = np.sort(order[: big[-1] + 1]) if big.size else np.zeros(0, dtype=np.int64)
    else:
        inside = np.zeros(n, dtype=bool)
        for a, b in runs:
            inside[a:b + 1] = True
        max_below = float(scores[~inside].max()) if (~inside).any() else 0.0
        keep = prune([scores[a:b + 1].max() for a, b in runs], max_below, min_percent)
    return merge_sequences([(runs[i][0], runs[i][1], means[i]) for i in keep])
