"""Affiliation: against the reference ``pr_from_events``, hand-worked values, degenerate input."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from madbench.metrics import affiliation, affiliation_from_events

from .strategies import PROPERTY, label_pred_pairs, same


def _reference():
    pytest.importorskip("vus")
    from vus.affiliation.generics import convert_vector_to_events
    from vus.affiliation.metrics import pr_from_events
    return convert_vector_to_events, pr_from_events


@PROPERTY
@given(label_pred_pairs(max_len=600))
def test_matches_reference_on_vectors(pair):
    to_events, pr_from_events = _reference()
    y, p = pair
    ours = affiliation(y, p)
    if not y.any():
        with pytest.raises(ValueError):
            pr_from_events(to_events(p), to_events(y), (0, y.size))
        assert all(math.isnan(v) for v in ours.values())
        return
    ref = pr_from_events(to_events(p), to_events(y), (0, y.size))
    assert same(ours["aff_precision"], ref["Affiliation_Precision"]), (ours, ref)
    assert same(ours["aff_recall"], ref["Affiliation_Recall"]), (ours, ref)
    P, R = ours["aff_precision"], ours["aff_recall"]
    if P + R > 0:
        assert ours["aff_f1"] == pytest.approx(2 * P * R / (P + R))


@st.composite
def float_events(draw, max_n=6, lo=0.0, hi=100.0):
    n = draw(st.integers(0, max_n))
    # no subnormals: event bounds below 2.2e-308 are no timestamp, and there the reference's
    # own per-event precision is NaN (hypothesis found gt [(0, 5e-324), (1e-308, 1)], pred [(0, 1)])
    pts = draw(st.lists(st.floats(lo, hi, allow_nan=False, allow_subnormal=False), min_size=2 * n, max_size=2 * n,
                        unique=True))
    pts = sorted(pts)
    return [(pts[2 * i], pts[2 * i + 1]) for i in range(n)]


@PROPERTY
@given(float_events(max_n=6), float_events(max_n=8))
def test_matches_reference_on_real_valued_events(gt, pred):
    """Events need not sit on the integer grid (every branch of the closed forms gets used)."""
    _, pr_from_events = _reference()
    if not gt:
        assert math.isnan(affiliation_from_events(pred, gt, (0.0, 100.0))["aff_recall"])
        return
    ref = pr_from_events(pred, gt, (0.0, 100.0))
    ours = affiliation_from_events(pred, gt, (0.0, 100.0))
    assert same(ours["aff_precision"], ref["Affiliation_Precision"]), (ours, ref)
    assert same(ours["aff_recall"], ref["Affiliation_Recall"]), (ours, ref)


def test_get_metrics_uses_score_above_half():
    """``get_metrics`` computes affiliation on ``score > 0.5``: on a 0/1 prediction, itself."""
    pytest.importorskip("vus")
    from vus.metrics import get_metrics
    rng = np.random.default_rng(3)
    y = np.zeros(400, dtype=np.int8)
    y[[*range(50, 80), *range(200, 210), *range(390, 400)]] = 1
    p = ((rng.random(400) < 0.05) | (np.roll(y, 5) == 1)).astype(np.float64)
    ref = get_metrics(p, y, metric="all", slidingWindow=10)
    ours = affiliation(y, p)
    assert ours["aff_precision"] == pytest.approx(ref["Affiliation_Precision"], abs=1e-9)
    assert ours["aff_recall"] == pytest.approx(ref["Affiliation_Recall"], abs=1e-9)


def test_hand_worked():
    """T=10, truth at steps 4-5 (J = [4, 6), zone E = [0, 10)), prediction at step 0 ([0, 1)).

    Precision: d(x, J) = 4 - x in (3, 4]; P(d(X, J) >= d) = 1 - (|J| + 2d)/|E| for d <= 4,
    whose mean over d in [3, 4] is 1 - (2 + 7)/10 = 0.1.
    Recall: d(y, I) = y - 1 for y in J; P(d(X, y) >= d) = 1 - (min(d, y) + min(d, 10 - y))/10
    = 1 - 2(y - 1)/10 for y <= 5.5 and 0.1 after; integral over [4, 6) = 0.375 + 0.05,
    divided by |J| = 2: 0.2125.
    """
    y = np.zeros(10, dtype=np.int8)
    y[4:6] = 1
    p = np.zeros(10, dtype=np.int8)
    p[0] = 1
    out = affiliation(y, p)
    assert out["aff_precision"] == pytest.approx(0.1)
    assert out["aff_recall"] == pytest.approx(0.2125)
    assert out["aff_f1"] == pytest.approx(2 * 0.1 * 0.2125 / 0.3125)


def test_perfect_and_empty_prediction():
    y = np.zeros(50, dtype=np.int8)
    y[[*range(0, 5), *range(20, 30), *range(45, 50)]] = 1
    assert affiliation(y, y) == {"aff_precision": 1.0, "aff_recall": 1.0, "aff_f1": 1.0}
    empty = affiliation(y, np.zeros(50))
    assert math.isnan(empty["aff_precision"]) and empty["aff_recall"] == 0.0 and empty["aff_f1"] == 0.0


def test_no_truth_is_nan():
    out = affiliation(np.zeros(20), np.ones(20))
    assert all(math.isnan(v) for v in out.values())


def test_rejects_bad_events():
    with pytest.raises(ValueError):
        affiliation_from_events([(3, 2)], [(0, 1)], (0, 10))
    with pytest.raises(ValueError):
        affiliation_from_events([(0, 2)], [(0, 3), (2, 5)], (0, 10))
    with pytest.raises(ValueError):
        affiliation(np.zeros(5), np.zeros(4))
