"""``evaluate`` / ``threshold_free`` / ``threshold_dependent`` and the end-to-end vus check."""
from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings

import madbench.metrics as M

from .strategies import PROPERTY, labelled_scores, same

EXPECTED_COLUMNS = ("precision, recall, f1, f05, pa_f1, event_tp, event_fp, event_fn, event_precision, "
                    "event_recall, event_f1, event_f05, aff_precision, aff_recall, aff_f1, r_auc_roc, "
                    "r_auc_pr, vus_roc, vus_pr, auc_roc, auc_pr").split(", ")


def test_metric_columns_exact():
    assert M.METRIC_COLUMNS == EXPECTED_COLUMNS
    assert set(M.THRESHOLD_FREE_COLUMNS) | set(M.THRESHOLD_DEPENDENT_COLUMNS) == set(EXPECTED_COLUMNS)


@PROPERTY
@given(labelled_scores(max_len=300, max_window=12, at_least_one=False))
def test_evaluate_is_the_union_of_its_parts(case):
    y, s, w = case
    pred = s > np.median(s)
    out = M.all_metrics(y, s, pred, w)
    assert list(out) == EXPECTED_COLUMNS
    parts = {**M.threshold_free(y, s, w), **M.threshold_dependent(y, pred)}
    assert all(same(out[c], parts[c], 0.0) for c in EXPECTED_COLUMNS)
    assert all(same(out[k], v, 0.0) for k, v in M.point_prf(y, pred).items())
    assert out["pa_f1"] == M.pa_f1(y, pred) or math.isnan(out["pa_f1"])
    assert (out["event_tp"], out["event_fp"], out["event_fn"]) == M.event_counts(y, pred)
    for c in EXPECTED_COLUMNS:  # every value is a plain number
        assert isinstance(out[c], (int, float)) and not isinstance(out[c], bool)


def test_evaluate_without_scores_or_preds_leaves_nan():
    y = np.array([0, 1, 1, 0, 0])
    only_preds = M.all_metrics(y, None, y, 2)
    assert all(math.isnan(only_preds[c]) for c in M.THRESHOLD_FREE_COLUMNS)
    assert only_preds["f1"] == 1.0
    only_scores = M.all_metrics(y, np.arange(5.0), None, 2)
    assert all(math.isnan(only_scores[c]) for c in M.THRESHOLD_DEPENDENT_COLUMNS)


def test_evaluate_degenerate_inputs_never_raise():
    for y in (np.zeros(0, dtype=np.int8), np.zeros(20, dtype=np.int8), np.ones(20, dtype=np.int8)):
        out = M.all_metrics(y, np.linspace(0, 1, y.size), np.ones(y.size, dtype=bool), 4)
        assert list(out) == EXPECTED_COLUMNS


def test_evaluate_refuses_nan_scores():
    with pytest.raises(ValueError, match="drop missing"):
        M.all_metrics(np.array([0, 1]), np.array([np.nan, 1.0]), np.array([0, 1]), 2)


@settings(PROPERTY, max_examples=25)
@given(labelled_scores(max_len=250, max_window=10, max_events=4, burst=8))
def test_against_vus_get_metrics_all(case):
    """One call of the reference entry point, all the keys madbench reproduces."""
    pytest.importorskip("vus")
    from vus.metrics import get_metrics
    y, s, w = case
    s = (s - s.min()) / (s.max() - s.min()) if s.max() > s.min() else np.zeros_like(s)
    if y.all() or not y.any():
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = get_metrics(s, y, metric="all", version="opt", slidingWindow=w, thre=250)
    out = M.all_metrics(y, s, s > 0.5, w)
    for ours, theirs in [("r_auc_roc", "R_AUC_ROC"), ("r_auc_pr", "R_AUC_PR"), ("vus_roc", "VUS_ROC"),
                         ("vus_pr", "VUS_PR"), ("auc_roc", "AUC_ROC"), ("auc_pr", "AUC_PR"),
                         ("aff_precision", "Affiliation_Precision"), ("aff_recall", "Affiliation_Recall")]:
        assert same(out[ours], float(ref[theirs])), (ours, out[ours], ref[theirs])


@pytest.mark.slow
def test_vus_is_never_imported_at_run_time():
    code = ("import sys, numpy as np, madbench.metrics as M; y = np.zeros(500, int); y[100:150] = 1; "
            "M.all_metrics(y, np.random.default_rng(0).random(500) + y, y, 20); "
            "assert not any(m == 'vus' or m.startswith('vus.') for m in sys.modules), 'vus imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_the_collect_and_eval_command_paths_import_no_sklearn_scipy_stats_or_torch_until_used():
    """madbench-collect and madbench-eval answer --help and refuse bad input before they
    compute a metric: importing sklearn (via the AUCs) or scipy.stats (via the POT
    threshold) up front cost each of those calls about a second."""
    code = ("import sys, madbench.tracking.collect, madbench.rescoring, madbench.metrics; "
            "heavy = sorted({m.split('.')[0] + ('.stats' if m.startswith('scipy.stats') else '') for m in sys.modules "
            "if m.split('.')[0] in ('sklearn', 'torch') or m.startswith('scipy.stats')}); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_reference_crashes_without_anomalies_we_return_nan():
    pytest.importorskip("vus")
    from vus.metrics import get_metrics
    y = np.zeros(200, dtype=np.int8)
    s = np.linspace(0, 1, 200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises((TypeError, ZeroDivisionError, IndexError, ValueError)):
            get_metrics(s, y, metric="all", slidingWindow=10)
    out = M.all_metrics(y, s, s > 0.5, 10)
    assert all(math.isnan(out[c]) for c in ("recall", "aff_precision", "r_auc_roc", "vus_pr", "auc_roc"))
    assert out["event_fp"] == 1 and out["event_precision"] == 0.0
