"""The three interval constructions: hand cases, and brute-force constructions written here
(covered steps for padding; the authors' notebook loop, transcribed, for forward)."""
import time

import numpy as np
import pytest

from madbench.scoring.intervals import forward_intervals, group_flags, intervals, run_intervals
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


def notebook_forward(flags, scores, bridge):
    """group_anomalies(days=N) of the authors' nasa.ipynb, transcribed on step indices: the
    first flag opens [t, t + N]; a flag with start <= t <= end extends the end to t + N,
    any other opens a new interval. Ends clipped to T - 1 here (the notebook had no end)."""
    out = []
    for t in np.flatnonzero(flags):
        if out and out[-1][0] <= t <= out[-1][1]:
            out[-1][1] = t + bridge
        else:
            out.append([t, t + bridge])
    n = len(flags)
    res = []
    for a, b in out:
        b = min(b, n - 1)
        vals = [v for v in scores[a: b + 1] if not np.isnan(v)]
        res.append((a, b, float(np.mean(vals)) if vals else np.nan))
    return res


@pytest.mark.parametrize("steps", [0, 1, 3, 50])
def test_matches_brute_force_and_the_notebook_loop(steps):
    rng = np.random.default_rng(steps)
    for n in (1, 2, 7, 150, 1000):
        flags = rng.random(n) < 0.03
        scores = rng.random(n)
        scores[rng.random(n) < 0.1] = np.nan
        assert_same(intervals(flags, scores, steps), brute(flags, scores, steps))
        assert_same(forward_intervals(flags, scores, steps), notebook_forward(flags, scores, steps))


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


def spans(found):
    return [(s, e) for s, e, _ in found]


def flags_at(n, *idx):
    f = np.zeros(n, bool)
    f[list(idx)] = True
    return f


def test_adjacent_flags_in_each_grouping():
    scores = np.arange(30, dtype=float)
    f = flags_at(30, 10, 11)
    assert intervals(f, scores, padding=0) == [(10, 11, 10.5)]
    assert run_intervals(f, scores) == [(10, 11, 10.5)]
    # the notebook's rule with N = 0: 11 is not <= 10 + 0, so each flag is its own interval
    assert forward_intervals(f, scores, bridge=0) == [(10, 10, 10.0), (11, 11, 11.0)]
    # N = 1: [10, 11], then 11 <= 11 joins and the end becomes 12; mean of 10, 11, 12
    assert forward_intervals(f, scores, bridge=1) == [(10, 12, 11.0)]


def test_a_bridge_that_just_reaches_and_one_that_misses_by_a_step():
    scores = np.arange(30, dtype=float)
    # 9 <= 5 + 4: joins; the interval runs to 9 + 4 = 13, mean of 5..13 = 9
    assert forward_intervals(flags_at(30, 5, 9), scores, bridge=4) == [(5, 13, 9.0)]
    # 10 > 5 + 4: a new interval, even though [5, 9] and [10, 14] touch (forward never merges them)
    assert forward_intervals(flags_at(30, 5, 10), scores, bridge=4) == [(5, 9, 7.0), (10, 14, 12.0)]
    # symmetric padding 2 merges gaps up to 2 * 2 + 1 = 5: [3, 7] and [8, 12] touch and merge
    assert spans(intervals(flags_at(30, 5, 10), scores, padding=2)) == [(3, 12)]
    assert spans(intervals(flags_at(30, 5, 11), scores, padding=2)) == [(3, 7), (9, 13)]


def test_flags_at_both_ends_of_the_series():
    scores = np.arange(20, dtype=float)
    f = flags_at(20, 0, 19)
    assert forward_intervals(f, scores, bridge=3) == [(0, 3, 1.5), (19, 19, 19.0)]  # end clipped at T - 1
    assert intervals(f, scores, padding=3) == [(0, 3, 1.5), (16, 19, 17.5)]          # both sides clipped
    assert run_intervals(f, scores) == [(0, 0, 0.0), (19, 19, 19.0)]
    # a bridge longer than the series: one interval from the first flag to the end
    assert forward_intervals(f, scores, bridge=100) == [(0, 19, 9.5)]
    # every step flagged: one run
    assert run_intervals(np.ones(20, bool), scores) == [(0, 19, 9.5)]


def test_runs_of_flags_and_nan_scores():
    scores = np.array([1.0, np.nan, 3.0, 5.0, 7.0, np.nan, np.nan, 2.0])
    f = np.array([1, 1, 0, 1, 1, 1, 1, 0], bool)
    got = run_intervals(f, scores)
    assert spans(got) == [(0, 1), (3, 6)] and got[0][2] == 1.0 and got[1][2] == 6.0
    got = forward_intervals(flags_at(8, 5), scores, bridge=1)  # [5, 6]: every score NaN
    assert spans(got) == [(5, 6)] and np.isnan(got[0][2])


def test_group_flags_dispatches_and_refuses_bad_input():
    f, s = flags_at(30, 5, 9), np.arange(30, dtype=float)
    assert group_flags(f, s, "padding", padding=2, bridge=99) == intervals(f, s, 2)
    assert group_flags(f, s, "forward", padding=99, bridge=4) == forward_intervals(f, s, 4)
    assert group_flags(f, s, "none") == run_intervals(f, s)
    with pytest.raises(ValueError, match="grouping must be one of"):
        group_flags(f, s, "backward")
    with pytest.raises(ValueError, match="bridge must be an integer >= 0"):
        forward_intervals(f, s, bridge=-1)
    assert forward_intervals(np.zeros(5, bool), np.zeros(5), 3) == [] == run_intervals(np.zeros(0, bool), np.zeros(0))
