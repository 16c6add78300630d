"""Point P/R/F, best F1, point adjustment and AUC."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from sklearn import metrics as skm

from madbench.metrics import auc, best_f1, pa_f1, point_adjust, point_prf

from .strategies import PROPERTY, label_pred_pairs, labelled_scores


def _tsb_ad_style_adjust(labels, preds):
    """The point-adjust loop as written in TSB-AD (and the code it copies), transcribed.

    Kept only to show its index-0 defect: ``range(i, 0, -1)`` never reaches j = 0.
    """
    actual, predict = np.asarray(labels) > 0.1, np.asarray(preds).astype(bool).copy()
    anomaly_state = False
    for i in range(len(actual)):
        if actual[i] and predict[i] and not anomaly_state:
            anomaly_state = True
            for j in range(i, 0, -1):
                if not actual[j]:
                    break
                predict[j] = True
        elif not actual[i]:
            anomaly_state = False
        if anomaly_state:
            predict[i] = True
    return predict


def _brute_adjust(labels, preds):
    out = np.asarray(preds).astype(bool).copy()
    i, n = 0, len(labels)
    while i < n:
        if labels[i]:
            j = i
            while j < n and labels[j]:
                j += 1
            if out[i:j].any():
                out[i:j] = True
            i = j
        else:
            i += 1
    return out


def test_point_adjust_segment_at_index_zero():
    y = np.array([1, 1, 1, 0, 0, 1, 1, 0])
    p = np.array([0, 0, 1, 0, 0, 0, 0, 1])
    adj = point_adjust(y, p)
    assert adj.tolist() == [True, True, True, False, False, False, False, True]
    # the TSB-AD loop leaves index 0 undetected
    assert _tsb_ad_style_adjust(y, p).tolist() == [False, True, True, False, False, False, False, True]
    # adjusted: tp = 3, fp = 1, fn = 2 -> P = 3/4, R = 3/5, F1 = 2/3
    assert pa_f1(y, p) == pytest.approx(2 / 3)


def test_point_adjust_segment_at_the_end_and_misses():
    y = np.array([0, 1, 1, 0, 1, 1, 1])
    p = np.array([0, 0, 0, 1, 0, 0, 1])
    assert point_adjust(y, p).tolist() == [False, False, False, True, True, True, True]


@PROPERTY
@given(label_pred_pairs(max_len=300))
def test_point_adjust_matches_brute_force(pair):
    y, p = pair
    adj = point_adjust(y, p)
    assert adj.dtype == bool
    assert np.array_equal(adj, _brute_adjust(y, p))
    # away from index 0 the transcribed loop agrees: it only differs on a segment at 0
    if y.size == 0 or y[0] == 0:
        assert np.array_equal(adj, _tsb_ad_style_adjust(y, p))


@PROPERTY
@given(label_pred_pairs(max_len=600))
def test_point_prf_matches_sklearn(pair):
    y, p = pair
    ours = point_prf(y, p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P, R, F, _ = skm.precision_recall_fscore_support(y, p, average="binary", zero_division=0)
        F05 = skm.fbeta_score(y, p, beta=0.5, zero_division=0)
    assert ours["precision"] == pytest.approx(P)
    if y.any():
        assert ours["recall"] == pytest.approx(R)
        assert ours["f1"] == pytest.approx(F)
        assert ours["f05"] == pytest.approx(F05)
    else:  # nothing to find: recall (and so F) is undefined
        assert math.isnan(ours["recall"]) and math.isnan(ours["f1"])


def test_point_prf_worked():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0, 0])
    out = point_prf(y, p)  # tp 2, fp 1, fn 2
    assert out["precision"] == pytest.approx(2 / 3)
    assert out["recall"] == pytest.approx(1 / 2)
    assert out["f1"] == pytest.approx(4 / 7)
    assert out["f05"] == pytest.approx(1.25 * (1 / 3) / (0.25 * 2 / 3 + 0.5))
    none = point_prf(y, np.zeros(10))
    assert none["precision"] == 0.0 and none["recall"] == 0.0 and none["f1"] == 0.0


@PROPERTY
@given(labelled_scores(max_len=400, at_least_one=True))
def test_best_f1_is_the_best_threshold(case):
    y, s, _ = case
    out = best_f1(y, s)
    # brute force over every distinct score as threshold
    best = max(point_prf(y, s >= t)["f1"] for t in np.unique(s))
    assert out["f1"] == pytest.approx(best)
    at = point_prf(y, s >= out["threshold"])
    assert at["f1"] == pytest.approx(out["f1"])
    assert at["precision"] == pytest.approx(out["precision"])
    assert at["recall"] == pytest.approx(out["recall"])


def test_best_f1_without_positive_is_nan():
    assert all(math.isnan(v) for v in best_f1(np.zeros(5), np.arange(5.0)).values())


@PROPERTY
@given(labelled_scores(max_len=600, at_least_one=False))
def test_auc_matches_sklearn(case):
    y, s, _ = case
    out = auc(y, s)
    if y.all() or not y.any():
        assert math.isnan(out["auc_roc"]) and math.isnan(out["auc_pr"])
        return
    assert out["auc_roc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert out["auc_pr"] == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)


def test_auc_matches_vus_get_metrics():
    pytest.importorskip("vus")
    from vus.metrics import get_metrics
    rng = np.random.default_rng(0)
    y = np.zeros(300, dtype=np.int8)
    y[[*range(0, 10), *range(100, 130), *range(290, 300)]] = 1
    s = np.round(rng.random(300) + y * 0.6, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = get_metrics(s, y, metric="all", slidingWindow=8)
    out = auc(y, s)
    assert out["auc_roc"] == pytest.approx(ref["AUC_ROC"], abs=1e-12)
    assert out["auc_pr"] == pytest.approx(ref["AUC_PR"], abs=1e-12)
    # vus' metric='auc' branch reports the PR trapezoid instead: a different number
    ref_auc = get_metrics(s, y, metric="auc")
    prec, rec, _ = skm.precision_recall_curve(y, s)
    assert ref_auc["AUC_PR"] == pytest.approx(skm.auc(rec, prec), abs=1e-12)
    assert out["auc_pr"] != pytest.approx(ref_auc["AUC_PR"], abs=1e-6)


def test_auc_worked():
    # positives ranked 1st and 3rd among 4: 3 of 4 (pos, neg) pairs ordered right;
    # AP = mean precision at each positive = (1/1 + 2/3) / 2
    out = auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]))
    assert out["auc_roc"] == pytest.approx(0.75)
    assert out["auc_pr"] == pytest.approx((1 + 2 / 3) / 2)
