"""All metrics of one entity in one call, with the threshold-free part reusable."""
from __future__ import annotations

import numpy as np

from ._common import as_binary, as_scores
from .affiliation import affiliation
from .events import event_counts, event_scores
from .point import auc, pa_f1, point_prf
from .range import range_and_vus

__all__ = ["METRIC_COLUMNS", "THRESHOLD_FREE_COLUMNS", "THRESHOLD_DEPENDENT_COLUMNS",
           "threshold_free", "threshold_dependent", "all_metrics"]

METRIC_COLUMNS = [
    "precision", "recall", "f1", "f05", "pa_f1",
    "event_tp", "event_fp", "event_fn", "event_precision", "event_recall", "event_f1", "event_f05",
    "aff_precision", "aff_recall", "aff_f1",
    "r_auc_roc", "r_auc_pr", "vus_roc", "vus_pr", "auc_roc", "auc_pr",
]
THRESHOLD_FREE_COLUMNS = ["r_auc_roc", "r_auc_pr", "vus_roc", "vus_pr", "auc_roc", "auc_pr"]
THRESHOLD_DEPENDENT_COLUMNS = [c for c in METRIC_COLUMNS if c not in THRESHOLD_FREE_COLUMNS]


def threshold_free(labels, scores, window: int, thresholds: int = 250) -> dict:
    """R-AUC, VUS (one shared sort) and AUC of a score; compute once per score vector."""
    y = as_binary(labels)
    s = as_scores(scores, y.size)
    out = range_and_vus(y, s, window, thresholds)
    out.update(auc(y, s))
    return {c: out[c] for c in THRESHOLD_FREE_COLUMNS}


def threshold_dependent(labels, preds) -> dict:
    """Point, PA, event and affiliation metrics of a 0/1 prediction."""
    y = as_binary(labels)
    p = as_binary(preds, "preds")
    out = point_prf(y, p)
    out["pa_f1"] = pa_f1(y, p)
    tp, fp, fn = event_counts(y, p)
    out.update(event_tp=tp, event_fp=fp, event_fn=fn)
    out.update(event_scores(tp, fp, fn))
    out.update(affiliation(y, p))
    return {c: out[c] for c in THRESHOLD_DEPENDENT_COLUMNS}


def all_metrics(labels, scores, preds, window: int, thresholds: int = 250) -> dict:
    """Every metric column (``METRIC_COLUMNS`` order) for one entity.

    ``scores`` (float) feed the threshold-free metrics and ``preds`` (0/1) the others;
    either may be None, which leaves its columns NaN. Missing steps must be dropped from
    labels, scores and preds alike before the call (NaN scores are refused).
    """
    out = {c: float("nan") for c in METRIC_COLUMNS}
    if scores is not None:
        out.update(threshold_free(labels, scores, window, thresholds))
    if preds is not None:
        out.update(threshold_dependent(labels, np.asarray(preds)))
    return out
