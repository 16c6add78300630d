"""Per-sensor residuals for M2AD scoring: ``point`` and ``area`` errors, shape [T, S].

Both follow the M2AD reference (METHODS.md, M2AD step 3):

* ``point``: ``|y - y_hat|`` per sensor, then exponentially weighted smoothing.
* ``area``: centred rolling trapezoid areas of ``y`` and ``y_hat`` per sensor, their
  difference smoothed, then z-scored with one mean/std over all values of all sensors.

Smoothing is ``pandas.DataFrame.ewm(com=com, adjust=True).mean()``: ``adjust=True`` is
pandas' default and what the reference gets from ``ewm(10)``. It runs down each sensor
column independently, starting at the first scored row.

Rows without a prediction (the first window of a forecaster) arrive as NaN rows. They
are dropped before any computation and restored as NaN in the output, so they are never
filled with zeros and smoothing starts at the first scored row. The scored rows are
treated as one sequence: if NaN rows sit between scored rows, smoothing and the rolling
areas run straight across the gap, as they do in the reference, which only ever sees the
predicted rows. A row is missing when every value of ``y`` or every value of ``y_hat``
in it is NaN. A row with only some values NaN, or any infinite value, raises
``ValueError``, because it means the residual is broken rather than absent.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["point_errors", "area_errors", "compute_errors", "missing_rows", "ERROR_KINDS"]

ERROR_KINDS = ("point", "area")


def _as_2d(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a [T, S] array, got shape {a.shape}")
    return a


def missing_rows(x: np.ndarray, name: str = "errors", columns=None) -> np.ndarray:
    """Boolean [T]: rows where every value is NaN (not scored).

    Raises ``ValueError`` for a row with some but not all values NaN, or for any
    infinite value: both mean a broken residual in the scored region. The message
    names the row and the column (by ``columns[j]`` when names are given).
    """
    x = np.asarray(x)
    label = (lambda j: repr(columns[j])) if columns is not None else (lambda j: str(j))
    nan = np.isnan(x)
    missing = nan.all(axis=1)
    partial = nan.any(axis=1) & ~missing
    if partial.any():
        rows = np.flatnonzero(partial)
        cols = [label(j) for j in np.flatnonzero(nan[rows[0]])]
        raise ValueError(
            f"{name}: NaN inside the scored region at {len(rows)} row(s), first row {rows[0]} "
            f"(column(s) {', '.join(cols)}); a row is either fully NaN (not scored) or fully finite"
        )
    inf = np.isinf(x)
    if inf.any():
        r, c = np.argwhere(inf)[0]
        raise ValueError(f"{name}: infinite value at row {r}, column {label(c)}")
    return missing


def _split(y, y_hat):
    """Validate inputs; return (valid y, valid y_hat, missing mask, T, S)."""
    y = _as_2d(y, "y")
    y_hat = _as_2d(y_hat, "y_hat")
    if y.shape != y_hat.shape:
        raise ValueError(f"y and y_hat must have the same shape, got {y.shape} and {y_hat.shape}")
    missing = missing_rows(y, "y") | missing_rows(y_hat, "y_hat")
    # A row missing in one input but finite in the other is still unscored: a target
    # without a prediction (or the reverse) has no residual.
    return y[~missing], y_hat[~missing], missing


def _restore(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    out = np.full((missing.size, values.shape[1]), np.nan)
    out[~missing] = values
    return out


def _ewm(x: np.ndarray, com: float) -> np.ndarray:
    if x.shape[0] == 0:
        return x
    return pd.DataFrame(x).ewm(com=com, adjust=True).mean().to_numpy()


def point_errors(y, y_hat, com: float = 10.0, smooth: bool = True) -> np.ndarray:
    """``|y - y_hat|`` per sensor, EWM-smoothed with ``com`` (adjust=True). Returns [T, S]."""
    yv, hv, missing = _split(y, y_hat)
    err = np.abs(yv - hv)
    if smooth:
        err = _ewm(err, com)
    return _restore(err, missing)


def rolling_trapezoid(x: np.ndarray, window: int = 10, dx: float = 100.0,
                      min_periods: int | None = None) -> np.ndarray:
    """Centred rolling ``np.trapezoid(w, dx=dx)`` down each column of ``x`` [n, S].

    Same windows as ``pd.Series.rolling(window, center=True, min_periods=...)``: row i
    covers rows ``i - window//2`` .. ``i + (window - 1 - window//2)``, truncated at the
    edges; a window with fewer than ``min_periods`` rows (default ``window // 2``) is NaN.
    The trapezoid over rows lo..hi is ``dx * (sum - (x[lo] + x[hi]) / 2)``.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    min_periods = window // 2 if min_periods is None else min_periods
    n, s = x.shape
    if n == 0:
        return x.copy()
    left = window // 2
    right = window - 1 - left
    padded = np.concatenate([np.zeros((left, s)), x, np.zeros((right, s))], axis=0)
    total = sliding_window_view(padded, window, axis=0).sum(axis=-1)
    i = np.arange(n)
    lo = np.maximum(i - left, 0)
    hi = np.minimum(i + right, n - 1)
    area = dx * (total - 0.5 * (x[lo] + x[hi]))
    area[(hi - lo + 1) < max(min_periods, 1)] = np.nan
    return area


def area_errors(y, y_hat, window: int = 10, dx: float = 100.0, com: float = 10.0,
                smooth: bool = True, min_periods: int | None = None,
                stats: tuple[float, float] | None = None, return_stats: bool = False):
    """Area errors [T, S] (M2AD step 3).

    1. Per sensor, the centred rolling trapezoid area (``window`` rows, ``dx`` spacing,
       ``min_periods = window // 2`` so edge rows use truncated windows) of ``y`` and of
       ``y_hat``; the error is ``area(y) - area(y_hat)`` (signed, hence the two-sided
       p-value downstream).
    2. EWM smoothing (``com``, adjust=True) down each sensor.
    3. z-score with a single mean and (population, ddof=0) std over all scored values of
       all sensors. The reference z-scores every call with its own values, so train and
       test errors are each standardised by their own statistics; that is the default.
       Pass ``stats=(mean, std)`` (e.g. from the train call with ``return_stats=True``) to
       standardise with other statistics instead. A zero or non-finite std only centres
       the values, with a warning, instead of dividing by zero.

    Returns the errors, or ``(errors, (mean, std))`` with ``return_stats=True``.
    """
    yv, hv, missing = _split(y, y_hat)
    err = (rolling_trapezoid(yv, window, dx, min_periods)
           - rolling_trapezoid(hv, window, dx, min_periods))
    if smooth:
        err = _ewm(err, com)
    if stats is None:
        finite = err[np.isfinite(err)]
        mu = float(finite.mean()) if finite.size else np.nan
        sd = float(finite.std()) if finite.size else np.nan
    else:
        mu, sd = (float(v) for v in stats)
    if np.isfinite(sd) and sd > 0:
        err = (err - mu) / sd
    else:
        warnings.warn(f"area_errors: std of the errors is {sd}; the errors are only centred",
                      RuntimeWarning, stacklevel=2)
        if np.isfinite(mu):
            err = err - mu
    out = _restore(err, missing)
    return (out, (mu, sd)) if return_stats else out


def compute_errors(y, y_hat, kind: str = "point", **kwargs):
    """Dispatch to :func:`point_errors` (``kind="point"``) or :func:`area_errors`."""
    if kind == "point":
        return point_errors(y, y_hat, **kwargs)
    if kind == "area":
        return area_errors(y, y_hat, **kwargs)
    raise ValueError(f"unknown error kind {kind!r}; expected one of {list(ERROR_KINDS)}")
