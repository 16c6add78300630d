"""Anomaly-detection metrics, pure numpy/scipy/sklearn, exact against the references.

=====================  ===================================================  ==============
column(s)              definition                                           module
=====================  ===================================================  ==============
precision recall f1    point-wise on 0/1 predictions                        point
f05 / pa_f1            F0.5; F1 after point adjustment                      point
event_*                M2AD / Orion contextual overlap counts and scores    events
aff_*                  affiliation (Huet et al. 2022) = vus pr_from_events  affiliation
r_auc_* / vus_*        Range-AUC and VUS (Paparrizos et al. 2022) = vus     range
auc_roc auc_pr         sklearn ROC AUC and average precision (= vus)        point
hit_100 hit_150        HitRate@P% of a per-step sensor ranking (Su 2019)   interpretation
ndcg_100 (+ _event)    NDCG@100% of the same ranking (binary relevance)     interpretation
=====================  ===================================================  ==============

The interpretation columns score which sensors an attribution ranks first against
ground-truth sensors (SMD's interpretation_label) over the labelled anomalous steps: they
read the test labels by definition, and never feed a threshold.

Inputs: ``labels`` are 0/1 per step, ``scores`` finite floats per step, ``preds`` 0/1 or
bool per step, all of one length. Steps without a score (NaN) must be dropped from all of
them by the caller first; NaN scores raise ``ValueError``, they are never filled.

Undefined values are NaN, never an exception: no truth event → recall, affiliation,
R-AUC and VUS are NaN; a single label class → AUCs are NaN; nothing predicted → precision
0 (affiliation precision NaN, as its reference). Each module's docstring gives its exact
conventions and where (and why) it departs from the reference implementation.

The ``vus`` package is only a test/bench reference and is never imported here.
"""
from .affiliation import affiliation, affiliation_from_events
from .events import event_counts, event_counts_intervals, event_scores
from .point import auc, best_f1, pa_f1, point_adjust, point_prf
from .range import range_auc, range_curves, vus
from .suite import (METRIC_COLUMNS, THRESHOLD_DEPENDENT_COLUMNS, THRESHOLD_FREE_COLUMNS, all_metrics,
                    threshold_dependent, threshold_free)

__all__ = [
    "METRIC_COLUMNS", "THRESHOLD_FREE_COLUMNS", "THRESHOLD_DEPENDENT_COLUMNS",
    "point_prf", "best_f1", "point_adjust", "pa_f1", "auc",
    "event_counts", "event_counts_intervals", "event_scores",
    "affiliation", "affiliation_from_events",
    "range_auc", "vus", "range_curves",
    "threshold_free", "threshold_dependent", "all_metrics",
]
