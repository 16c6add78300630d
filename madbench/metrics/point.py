"""Point-wise metrics: P/R/F, best F1 on the PR curve, point adjustment, AUC-ROC/PR.

Conventions (shared with :mod:`madbench.metrics.events`):

* precision = tp / (tp + fp), and 0 when nothing is predicted (sklearn's
  ``zero_division=0``): a detector that flags nothing has no correct detection.
* recall = tp / (tp + fn), and NaN when there is nothing to find (no positive label): the
  value is undefined, and NaN lets a mean over entities skip the entity.
* F-beta = (1 + b²)PR / (b²P + R); NaN if P or R is NaN, 0 when P = R = 0.

Point adjustment (PA): if any point of a truth segment is predicted, the whole segment
counts as predicted; predictions outside truth segments are kept as they are. Segments
that start at index 0 are adjusted like any other. (The widespread loop
``for j in range(i, 0, -1)`` — e.g. in TSB-AD and the OmniAnomaly/TranAD code it copies —
never visits index 0, so a segment starting at 0 keeps an undetected first point; see
``tests/metrics/test_point.py``.)

AUC: ``auc_roc`` is ``sklearn.metrics.roc_auc_score`` and ``auc_pr`` is
``sklearn.metrics.average_precision_score`` (the step-wise area under the PR curve). That
is what ``vus.get_metrics(metric='all')`` reports as ``AUC_ROC`` / ``AUC_PR`` (through
``basic_metricor``). Note that ``vus``'s other branch, ``get_metrics(metric='auc')``, goes
through ``utils.metrics.metricor.metric_PR`` and reports the *trapezoid* under the PR curve
instead, a slightly different number; madbench follows ``metric='all'``. Both values are
NaN when the labels hold a single class (``vus`` crashes on all-zero labels).
"""
from __future__ import annotations

import warnings

import numpy as np

from ._common import as_binary, as_scores, binary_pair, f_beta, runs, safe_div

__all__ = ["point_prf", "best_f1", "point_adjust", "pa_f1", "auc"]


def _prf_counts(tp: int, fp: int, fn: int) -> dict:
    precision = safe_div(tp, tp + fp, 0.0)
    recall = safe_div(tp, tp + fn, float("nan"))
    return {"precision": precision, "recall": recall,
            "f1": f_beta(precision, recall, 1.0), "f05": f_beta(precision, recall, 0.5)}


def point_prf(labels, preds) -> dict:
    """Point-wise ``{"precision", "recall", "f1", "f05"}`` of a 0/1 prediction."""
    y, p = binary_pair(labels, preds)
    tp = int(np.count_nonzero(y & p))
    fp = int(np.count_nonzero(p)) - tp
    fn = int(np.count_nonzero(y)) - tp
    return _prf_counts(tp, fp, fn)


def best_f1(labels, scores) -> dict:
    """The best point F1 over sklearn's PR curve (it uses the test labels: mark it so).

    Returns ``{"f1", "precision", "recall", "threshold"}``; predict with
    ``scores >= threshold``. Among thresholds that tie on F1 the lowest one is returned.
    All NaN when the labels have no positive.
    """
    y = as_binary(labels)
    s = as_scores(scores, y.size)
    nan = float("nan")
    if y.size == 0 or not y.any():
        return {"f1": nan, "precision": nan, "recall": nan, "threshold": nan}
    from sklearn.metrics import precision_recall_curve  # here: importing sklearn costs every CLI about 1 s

    precision, recall, thresholds = precision_recall_curve(y, s)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    den = precision + recall
    f1 = np.divide(2 * precision * recall, den, out=np.zeros_like(den), where=den > 0)
    i = int(np.argmax(f1))
    return {"f1": float(f1[i]), "precision": float(precision[i]), "recall": float(recall[i]),
            "threshold": float(thresholds[i])}


def point_adjust(labels, preds) -> np.ndarray:
    """Point-adjusted prediction (bool): a truth segment with any hit becomes all hits."""
    y, p = binary_pair(labels, preds)
    out = p.astype(bool)
    starts, ends = runs(y)
    if starts.size == 0:
        return out
    cuts = np.column_stack([starts, ends + 1]).ravel()
    hit = np.add.reduceat(np.append(p, np.int8(0)).astype(np.int64), cuts)[::2] > 0
    mark = np.zeros(y.size + 1, dtype=np.int64)
    np.add.at(mark, starts[hit], 1)
    np.add.at(mark, ends[hit] + 1, -1)
    return out | (np.cumsum(mark[:-1]) > 0)


def pa_f1(labels, preds) -> float:
    """Point F1 after :func:`point_adjust`."""
    return point_prf(labels, point_adjust(labels, preds))["f1"]


def auc(labels, scores) -> dict:
    """``{"auc_roc", "auc_pr"}`` (see the module docstring); NaN with a single class."""
    y = as_binary(labels)
    s = as_scores(scores, y.size)
    nan = float("nan")
    if y.size == 0 or y.all() or not y.any():
        return {"auc_roc": nan, "auc_pr": nan}
    from sklearn.metrics import average_precision_score, roc_auc_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        roc = float(roc_auc_score(y, s))
        pr = float(average_precision_score(y, s))
    return {"auc_roc": roc, "auc_pr": pr}
