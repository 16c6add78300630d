"""Padded, merged intervals against a brute-force construction."""
import time

import numpy as np
import pytest

from madbench.scoring.intervals import intervals
from madbench.scoring.m2ad import intervals as reexported


def brute(flags, scores, padding):
    """Mark every covered step, then read off runs of covered steps and average over them."""
    n = len(flags)
    covered = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(flags):
        covered[max(0, i - padding): min(n - 1, i + padding) + 1] = True
    out, i = [], 0
    while i < n:
        if covered[i]:
            j = i
            while j + 1 < n and covered[j + 1]:
                j += 1
            vals = [v for v in scores[i: j + 1] if not np.isnan(v)]
            out.append((i, j, float(np.mean(vals)) if vals else np.nan))
            i = j + 1
        else:
            i += 1
    return out


def assert_same(a, b):
    assert [(s, e) for s, e, _ in a] == [(s, e) for s, e, _ in b]
    np.testing.assert_allclose([v for *_, v in a], [v for *_, v in b], rtol=1e-12)


def test_single_flag_and_score_mean():
    scores = np.arange(300, dtype=float)
    flags = np.zeros(300, bool)
    flags[150] = True
    assert intervals(flags, scores) == [(100, 200, 150.0)]
    assert reexported is intervals


def test_padding_clipped_at_both_edges():
    n = 200
    flags = np.zeros(n, bool)
    flags[[0, n - 1]] = True
    scores = np.linspace(0, 1, n)
    got = intervals(flags, scores, padding=50)
    assert [(s, e) for s, e, _ in got] == [(0, 50), (149, 199)]
    assert got[0][2] == pytest.approx(scores[:51].mean())
    assert got[1][2] == pytest.approx(scores[149:].mean())


def test_touching_intervals_merge_and_gap_of_one_does_not():
    n, p = 400, 10
    scores = np.random.default_rng(0).random(n)
    flags = np.zeros(n, bool)
    flags[[50, 50 + 2 * p + 1]] = True  # [40, 60] and [61, 81]: start == prev_end + 1
    got = intervals(flags, scores, padding=p)
    assert [(s, e) for s, e, _ in got] == [(40, 81)]
    assert got[0][2] == pytest.approx(scores[40:82].mean())
    flags = np.zeros(n, bool)
    flags[[50, 50 + 2 * p + 2]] = True  # [40, 60] and [62, 82]: one uncovered step between
    assert [(s, e) for s, e, _ in intervals(flags, scores, padding=p)] == [(40, 60), (62, 82)]


def test_nan_scores_are_ignored():
    scores = np.array([np.nan, np.nan, 1.0, 3.0, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan])
    flags = np.zeros(10, bool)
    flags[[2, 8]] = True
    got = intervals(flags, scores, padding=1)
    assert got[0][:2] == (1, 3) and got[0][2] == pytest.approx(2.0)
    assert got[1][:2] == (7, 9) and np.isnan(got[1][2])


@pytest.mark.parametrize("padding", [0, 1, 3, 50])
def test_matches_brute_force(padding):
    rng = np.random.default_rng(padding)
    for n in (1, 2, 7, 150, 1000):
        flags = rng.random(n) < 0.03
        scores = rng.random(n)
        scores[rng.random(n) < 0.1] = np.nan
        assert_same(intervals(flags, scores, padding), brute(flags, scores, padding))


def test_no_flags_and_bad_input():
    assert intervals(np.zeros(10, bool), np.zeros(10)) == []
    assert intervals(np.zeros(0, bool), np.zeros(0)) == []
    with pytest.raises(ValueError, match="equal length"):
        intervals(np.zeros(10, bool), np.zeros(9))
    with pytest.raises(ValueError, match="padding"):
        intervals(np.zeros(10, bool), np.zeros(10), padding=-1)


def test_linear_time_on_long_series():
    n = 2_000_000
    rng = np.random.default_rng(1)
    flags = rng.random(n) < 0.002
    t0 = time.perf_counter()
    got = intervals(flags, rng.random(n), padding=50)
    assert time.perf_counter() - t0 < 5.0
    assert len(got) > 100 and all(b[0] > a[1] + 1 for a, b in zip(got, got[1:]))
