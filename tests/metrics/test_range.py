"""R-AUC and VUS: against the ``vus`` package, hand-worked cases, degenerate input, cost."""
from __future__ import annotations

import math
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given

from madbench.metrics import range_auc, vus
from madbench.metrics.range import range_and_vus

from .strategies import PROPERTY, labelled_scores, same


def _vus_reference():
    pytest.importorskip("vus")
    from vus.analysis.robustness_eval import generate_curve
    from vus.utils.metrics import metricor
    return metricor, generate_curve


@PROPERTY
@given(labelled_scores(max_len=600, max_window=20))
def test_range_auc_matches_reference(case):
    """``metricor.RangeAUC``: what ``vus.get_metrics`` reports as R_AUC_ROC / R_AUC_PR."""
    metricor, _ = _vus_reference()
    y, s, w = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reference divides 0/0 when every step is labelled
        r_roc, r_pr, *_ = metricor().RangeAUC(labels=y, score=s, window=w, plot_ROC=True)
    ours = range_auc(y, s, w)
    assert same(ours["r_auc_roc"], r_roc), (ours, r_roc)
    assert same(ours["r_auc_pr"], r_pr), (ours, r_pr)


# the reference VUS loops over windows x 250 thresholds x segments in Python: shorter series
@PROPERTY
@given(labelled_scores(max_len=300, max_window=20, max_events=5, burst=12))
def test_vus_matches_reference(case):
    """``generate_curve(version='opt', thre=250)``: what ``get_metrics`` reports as VUS_ROC / VUS_PR."""
    _, generate_curve = _vus_reference()
    y, s, w = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        *_, v_roc, v_pr = generate_curve(y, s, w, "opt", 250)
    ours = range_and_vus(y, s, w)
    assert same(ours["vus_roc"], v_roc), (ours, v_roc)
    assert same(ours["vus_pr"], v_pr), (ours, v_pr)
    alone = {**range_auc(y, s, w), **vus(y, s, w)}
    assert all(same(ours[k], alone[k], 0.0) for k in ours)


@pytest.mark.parametrize("thre", [1, 7, 64])
def test_vus_threshold_count_matches_reference(thre):
    metricor, generate_curve = _vus_reference()
    rng = np.random.default_rng(thre)
    y = np.zeros(300, dtype=np.int8)
    y[[0, 1, 40, 41, 42, 150, 299]] = 1
    s = np.round(rng.random(300) + 0.5 * y, 2)
    *_, v_roc, v_pr = generate_curve(y, s, 12, "opt", thre)
    ours = vus(y, s, 12, thresholds=thre)
    assert same(ours["vus_roc"], v_roc) and same(ours["vus_pr"], v_pr)


def test_hand_worked_no_buffer():
    """T=4, one anomalous step ranked second, window 0: ROC 2/3; PR areas differ by convention.

    Thresholds are the sorted scores [.9, .5, .3, .2] at indices linspace(0, 3, 250):
    TPR jumps 0 -> 1 at the second threshold, where precision = 1/2 and before it 0.
    R-AUC-PR is a trapezoid: (0 + 1/2) / 2 = 1/4. VUS-PR is a right sum: 1 * 1/2.
    """
    y = np.array([0, 1, 0, 0])
    s = np.array([0.9, 0.5, 0.2, 0.3])
    r = range_auc(y, s, 0)
    v = vus(y, s, 0)
    assert r["r_auc_roc"] == pytest.approx(2 / 3)
    assert v["vus_roc"] == pytest.approx(2 / 3)
    assert r["r_auc_pr"] == pytest.approx(0.25)
    assert v["vus_pr"] == pytest.approx(0.5)


def test_hand_worked_buffer():
    """T=5, event at step 2, window 2: buffer sqrt(1 - 1/2) at steps 1 and 3.

    P = 1, P_new = (1 + 1 + 2c) / 2 with c = sqrt(.5); thresholds are the sorted scores
    [1, .5, .2, .1, 0] repeated 63, 62, 62, 62, 1 times. One extended segment [1, 3].
    """
    y = np.array([0, 0, 1, 0, 0])
    s = np.array([0.0, 0.5, 1.0, 0.2, 0.1])
    c = math.sqrt(0.5)
    p_new = (1 + 1 + 2 * c) / 2
    n_new = 5 - p_new
    tp = np.array([1, 1 + c, 1 + 2 * c, 1 + 2 * c, 1 + 2 * c])
    npred = np.array([1, 2, 3, 4, 5])
    tpr = np.minimum(tp / p_new, 1)
    fpr = (npred - tp) / n_new
    prec = tp / npred
    reps = np.array([63, 62, 62, 62, 1])
    T_ = np.concatenate([[0], np.repeat(tpr, reps), [1]])
    F_ = np.concatenate([[0], np.repeat(fpr, reps), [1]])
    P_ = np.concatenate([[1], np.repeat(prec, reps)])
    roc = np.sum(np.diff(F_) * (T_[1:] + T_[:-1]) / 2)
    pr = np.sum(np.diff(T_[:-1]) * (P_[1:] + P_[:-1]) / 2)
    # only two distinct ROC vertices matter: (0, 1/P_new) then (fpr_1, 1), then height 1
    assert roc == pytest.approx(fpr[1] * (tpr[0] + 1) / 2 + (1 - fpr[1]))
    out = range_auc(y, s, 2)
    assert out["r_auc_roc"] == pytest.approx(roc, abs=1e-12)
    assert out["r_auc_pr"] == pytest.approx(pr, abs=1e-12)


def test_ties_are_predicted_together():
    """With a constant score every threshold predicts every step: ROC is the chance diagonal."""
    y = np.zeros(50, dtype=np.int8)
    y[10:15] = 1
    out = range_auc(y, np.ones(50), 0)
    # all 250 thresholds give (FPR, TPR) = (1, 1): area = 1/2 from the (0,0)-(1,1) diagonal
    assert out["r_auc_roc"] == pytest.approx(0.5)
    assert out["r_auc_pr"] == pytest.approx((1 + 5 / 50) / 2)


def test_no_event_is_nan_where_reference_crashes():
    metricor, generate_curve = _vus_reference()
    y = np.zeros(40, dtype=np.int8)
    s = np.linspace(0, 1, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ZeroDivisionError):
            metricor().RangeAUC(labels=y, score=s, window=4, plot_ROC=True)
        with pytest.raises(IndexError):
            generate_curve(y, s, 4, "opt", 250)
    out = range_and_vus(y, s, 4)
    assert all(math.isnan(v) for v in out.values())


def test_all_labelled_roc_is_nan_pr_is_defined():
    y = np.ones(30, dtype=np.int8)
    out = range_and_vus(y, np.linspace(0, 1, 30), 6)
    assert math.isnan(out["r_auc_roc"]) and math.isnan(out["vus_roc"])
    assert out["vus_pr"] == pytest.approx(1.0) and out["r_auc_pr"] == pytest.approx(1.0)


def test_refuses_nan_scores_and_bad_window():
    y = np.array([0, 1, 0])
    with pytest.raises(ValueError, match="drop missing"):
        vus(y, np.array([0.1, np.nan, 0.2]), 2)
    with pytest.raises(ValueError):
        range_auc(y, np.array([0.1, 0.3, 0.2]), -1)
    with pytest.raises(ValueError):
        range_auc(np.array([0, 2, 0]), np.array([0.1, 0.3, 0.2]), 2)


def _synthetic(T, seed=0):
    rng = np.random.default_rng(seed)
    y = np.zeros(T, dtype=np.int8)
    pos = 0
    while True:
        pos += int(rng.integers(1000, 5000))
        if pos >= T:
            break
        n = int(rng.integers(50, 500))
        y[pos:pos + n] = 1
        pos += n
    return y, rng.normal(size=T) + y


def test_no_dense_threshold_matrix():
    """Peak traced memory stays a small multiple of T (a T x 250 matrix would be 100 MB)."""
    y, s = _synthetic(50_000)
    tracemalloc.start()
    range_and_vus(y, s, 100)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 40 * 8 * y.size, peak


def test_near_linear_in_length():
    import time

    def t(n):
        y, s = _synthetic(n)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            range_and_vus(y, s, 100)
            best = min(best, time.perf_counter() - t0)
        return best

    small, big = t(25_000), t(200_000)
    assert big < 1.0
    assert big / small < 8 * 3  # 8x the data: allow sort's log factor and timer noise


def test_progress_bar_only_when_asked_or_long(capsys):
    y, s = _synthetic(20_000)
    quiet = vus(y, s, 10)
    assert "VUS windows" not in capsys.readouterr().err
    loud = vus(y, s, 10, progress=True)
    assert "VUS windows" in capsys.readouterr().err
    assert loud == quiet
