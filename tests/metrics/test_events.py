"""Event overlap counts (M2AD / Orion contextual, non-weighted) and event scores."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from madbench.metrics import event_counts, event_counts_intervals, event_scores

from .strategies import PROPERTY, label_pred_pairs


def _brute(truth, detected):
    """The definition, pair by pair: overlap = at least one shared index."""
    def overlap(a, b):
        return bool(set(range(a[0], a[1] + 1)) & set(range(b[0], b[1] + 1)))
    tp = sum(any(overlap(t, d) for d in detected) for t in truth)
    fp = sum(not any(overlap(d, t) for t in truth) for d in detected)
    return tp, fp, len(truth) - tp


def _runs(x):
    out, i = [], 0
    while i < len(x):
        if x[i]:
            j = i
            while j + 1 < len(x) and x[j + 1]:
                j += 1
            out.append((i, j))
            i = j + 1
        else:
            i += 1
    return out


def test_touching_only_at_the_last_index_is_a_hit():
    assert event_counts_intervals([(10, 20)], [(20, 30)]) == (1, 0, 0)
    assert event_counts_intervals([(10, 20)], [(0, 10)]) == (1, 0, 0)
    # adjacent but not sharing an index: a miss and a false alarm
    assert event_counts_intervals([(10, 20)], [(21, 30)]) == (0, 1, 1)
    # a one-step event found at its own index
    assert event_counts_intervals([(7, 7)], [(7, 7)]) == (1, 0, 0)


def test_one_detection_over_two_events_counts_two_tp():
    assert event_counts_intervals([(5, 10), (20, 25)], [(8, 22)]) == (2, 0, 0)
    # the same from vectors
    y = np.zeros(40, dtype=np.int8)
    y[5:11] = 1
    y[20:26] = 1
    p = np.zeros(40, dtype=np.int8)
    p[8:23] = 1
    assert event_counts(y, p) == (2, 0, 0)


def test_worked_mixture():
    truth = [(0, 4), (10, 12), (30, 39), (50, 50)]
    detected = [(4, 6), (14, 20), (31, 32), (35, 36), (60, 70)]
    # (0,4) hit by (4,6); (10,12) missed; (30,39) hit twice (still one tp); (50,50) missed;
    # (14,20) and (60,70) overlap nothing
    assert event_counts_intervals(truth, detected) == (2, 2, 2)


def test_unsorted_and_empty_inputs():
    assert event_counts_intervals([], []) == (0, 0, 0)
    assert event_counts_intervals([(3, 5)], []) == (0, 0, 1)
    assert event_counts_intervals([], [(3, 5), (9, 9)]) == (0, 2, 0)
    assert event_counts_intervals([(30, 40), (0, 5)], [(38, 50), (100, 120), (2, 3)]) == (2, 1, 0)
    with pytest.raises(ValueError):
        event_counts_intervals([(5, 3)], [])


@PROPERTY
@given(label_pred_pairs(max_len=300))
def test_vectors_match_brute_force(pair):
    y, p = pair
    assert event_counts(y, p) == _brute(_runs(y), _runs(p))


@PROPERTY
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 30)), max_size=12),
       st.lists(st.tuples(st.integers(0, 200), st.integers(0, 30)), max_size=12))
def test_arbitrary_intervals_match_brute_force(t, d):
    truth = [(s, s + n) for s, n in t]
    detected = [(s, s + n) for s, n in d]
    assert event_counts_intervals(truth, detected) == _brute(truth, detected)


def test_event_scores():
    out = event_scores(3, 1, 2)  # P = 3/4, R = 3/5
    assert out["event_precision"] == pytest.approx(0.75)
    assert out["event_recall"] == pytest.approx(0.6)
    assert out["event_f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert out["event_f05"] == pytest.approx(1.25 * 0.75 * 0.6 / (0.25 * 0.75 + 0.6))


def test_event_scores_degenerate():
    nothing_detected = event_scores(0, 0, 4)
    assert nothing_detected["event_precision"] == 0.0 and nothing_detected["event_recall"] == 0.0
    assert nothing_detected["event_f1"] == 0.0
    nothing_to_find = event_scores(0, 3, 0)
    assert nothing_to_find["event_precision"] == 0.0
    assert math.isnan(nothing_to_find["event_recall"]) and math.isnan(nothing_to_find["event_f1"])
    empty = event_scores(0, 0, 0)
    assert empty["event_precision"] == 0.0 and math.isnan(empty["event_recall"])


def _orion_overlap_segment(expected, observed):
    """Orion's non-weighted contextual counts, transcribed (``_overlap`` uses a strict < 0)."""
    def overlap(e, o):
        return (e[0] - o[1]) * (e[1] - o[0]) < 0
    tp = fn = 0
    unused = list(observed)
    for e in expected:
        found = False
        for o in observed:
            if overlap(e, o):
                if not found:
                    tp += 1
                    found = True
                if o in unused:
                    unused.remove(o)
        fn += not found
    return tp, len(unused), fn


def test_differs_from_orion_only_on_shared_end_points():
    """On step indices, sharing the end step is an overlap; Orion's strict test says no."""
    truth, detected = [(10, 20)], [(20, 30)]
    assert _orion_overlap_segment(truth, detected) == (0, 1, 1)
    assert event_counts_intervals(truth, detected) == (1, 0, 0)
    # a one-step event detected exactly: Orion misses it too
    assert _orion_overlap_segment([(7, 7)], [(7, 7)]) == (0, 1, 1)
    # with a real overlap of two or more steps both agree
    truth, detected = [(10, 20), (40, 50)], [(15, 45), (60, 61)]
    assert _orion_overlap_segment(truth, detected) == event_counts_intervals(truth, detected) == (2, 1, 0)
