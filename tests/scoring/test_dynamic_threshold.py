"""Nonparametric dynamic thresholding (madbench.scoring.dynamic_threshold): hand-computed
cases for the criterion, the ε search, padding, pruning (Hundman et al. 2018, §3.2: the
sorted maxima with the largest normal error appended, kept down to the last drop of at least
p) and merging; Orion's window loop; and the scorer (scoring=dynamic_threshold) with its
one-line refusals. Orion's and telemanom's code need TensorFlow, so the cross-checks are
hand computations and brute force written from the paper."""
import math

import numpy as np
import pandas as pd
import pytest

from madbench.errors import ConfigError
from madbench.scoring import dynamic_threshold as dt
from madbench.scoring.base import SeriesScores
from madbench.scoring.scorers import DynamicThresholdScoring

E5 = np.array([1.0, 1.0, 1.0, 1.0, 10.0])  # mean 2.8, std 3.6 (population)


def test_criterion_by_hand():
    mean, std = E5.mean(), E5.std()
    assert (mean, std) == pytest.approx((2.8, 3.6))
    # z = 1: epsilon 6.4, one error above in one run; the rest have mean 1 and std 0
    # (Δμ/μ + Δσ/σ) / (|e_a| + |E_seq|²) = (1.8/2.8 + 3.6/3.6) / (1 + 1)
    assert dt.z_cost(1.0, E5, mean, std) == pytest.approx(-(1.8 / 2.8 + 1.0) / 2)
    # z = 2: epsilon 10.0, nothing strictly above: the criterion is undefined, the cost infinite
    assert dt.z_cost(2.0, E5, mean, std) == math.inf


def test_criterion_counts_runs_squared():
    e = np.array([0.0, 5, 5, 0, 5, 0, 0, 0, 0, 0])
    mean, std = e.mean(), e.std()
    below = e[e <= 1.0]
    # z puts epsilon at 1.0: three errors above in two runs -> denominator 3 + 2² = 7
    z = (1.0 - mean) / std
    expected = -((mean - below.mean()) / mean + (std - below.std()) / std) / 7
    assert dt.z_cost(z, e, mean, std) == pytest.approx(expected)
    # a run touching the first step counts too
    assert dt._runs(np.array([True, True, False, True])) == 2


def brute_force_epsilon(errors, zs):
    """Hundman's argmax over candidate z, written from the paper with python sets: the
    errors above epsilon, the runs of consecutive indices among them, and the mean/std of the
    rest; the largest z on ties (telemanom's >=)."""
    mean, std = float(np.mean(errors)), float(np.std(errors))
    best, best_z = -math.inf, None
    for z in zs:
        eps = mean + z * std
        above = [i for i, v in enumerate(errors) if v > eps]
        rest = [v for v in errors if v <= eps]
        if not above:
            continue
        runs = 1 + sum(1 for a, b in zip(above, above[1:]) if b != a + 1)
        score = ((mean - np.mean(rest)) / mean + (std - np.std(rest)) / std) / (len(above) + runs ** 2)
        if score >= best:
            best, best_z = score, z
    return mean + best_z * std


def test_grid_search_matches_the_papers_argmax():
    # z < 2 all cut between the 1s and the 10 (same cost): the largest such z on the grid is 1.5
    assert dt.find_threshold(E5, (0, 12), "grid") == pytest.approx(2.8 + 1.5 * 3.6)
    rng = np.random.default_rng(3)
    for _ in range(5):
        e = np.abs(rng.normal(size=300))
        e[rng.integers(0, 300, 4)] += rng.uniform(3, 8, 4)
        e = dt.ewma(e, 5)
        zs = np.arange(2.5, 12, 0.5)  # telemanom's candidates
        assert dt.find_threshold(e, (2.5, 12), "grid") == pytest.approx(brute_force_epsilon(e, zs))


def test_fmin_search_is_orions_lowest_cost_first_start():
    # every start below 2 reaches the same cost; the first start (z = 0) is kept, epsilon ~ the mean
    eps = dt.find_threshold(E5, (0, 10), "fmin")
    assert eps == pytest.approx(2.8, abs=1e-3)
    mean, std = E5.mean(), E5.std()
    assert dt.z_cost((eps - mean) / std, E5, mean, std) == pytest.approx(dt.z_cost(1.0, E5, mean, std))
    # a window with no spread: nothing can be above its mean
    assert dt.find_threshold(np.ones(10)) == 1.0


def test_fixed_threshold_is_mean_plus_k_std():
    assert dt.fixed_threshold(E5) == pytest.approx(2.8 + 4 * 3.6)
    assert dt.fixed_threshold(E5, k=1) == pytest.approx(6.4)


def test_padding_widens_and_joins_touching_sequences():
    e = np.zeros(30)
    e[[5, 12]] = 1.0
    seqs, below = dt.find_sequences(e, 0.5, padding=2)
    assert seqs.tolist() == [[3, 7], [10, 14]] and below == 0.0
    e[12], e[10] = 0.0, 1.0  # [3, 7] and [8, 12] touch: one sequence, as Orion's mask of padded steps
    seqs, _ = dt.find_sequences(e, 0.5, padding=2)
    assert seqs.tolist() == [[3, 12]]
    e = np.arange(10.0)
    seqs, below = dt.find_sequences(e, 8.5, padding=0)  # only step 9; the largest normal error is 8
    assert seqs.tolist() == [[9, 9]] and below == 8.0
    seqs, _ = dt.find_sequences(e, 0.5, padding=50)  # clipped to the array
    assert seqs.tolist() == [[0, 9]]


def test_pruning_by_hand():
    # sorted with the normal maximum appended: 10, 9.5, 5 | 4; drops .05, .474, .2 against p = .13
    assert dt.prune([10, 9.5, 5], 4.0, 0.13).tolist() == [0, 1, 2]
    # normal maximum 4.8: the last drop is .04, so the 5 is reclassified as nominal
    assert dt.prune([5, 10, 9.5], 4.8, 0.13).tolist() == [1, 2]
    # a chain of small drops down to the normal maximum prunes even the largest sequence
    assert dt.prune([10, 9.5], 9.0, 0.13).tolist() == []
    # p = 0 keeps every sequence
    assert dt.prune([10, 9.5], 9.0, 0.0).tolist() == [0, 1]
    assert dt.prune([], 1.0, 0.13).tolist() == []


def test_merge_overlapping_and_touching_weighted_by_length():
    got = dt.merge_sequences([(20, 29, 1.0), (0, 9, 2.0), (10, 14, 4.0), (12, 19, 1.0), (40, 40, 3.0)])
    # 0..9 (10 steps, 2.0), 10..14 (5 steps, 4.0) touch, 12..19 (8 steps, 1.0) and 20..29 (10, 1.0)
    assert [(a, b) for a, b, _ in got] == [(0, 29), (40, 40)]
    assert got[0][2] == pytest.approx((10 * 2 + 5 * 4 + 8 * 1 + 10 * 1) / 33)
    assert got[1][2] == 3.0


def test_one_spike_end_to_end_by_hand():
    e = np.ones(200)
    e[100] = 10.0
    mean = 209 / 200
    std = math.sqrt(299 / 200 - mean ** 2)
    eps = mean + 4 * std
    (got,) = dt.find_anomalies(e, fixed=True, padding=50, min_percent=0.13)
    assert got[:2] == (50, 150)
    assert got[2] == pytest.approx((10 - eps) / (mean + std))
    # the dynamic search finds the same single event
    assert [g[:2] for g in dt.find_anomalies(e, padding=50)] == [(50, 150)]


def test_pruning_removes_a_second_bump_close_to_normal_errors():
    e = np.ones(400)
    e[100] = 10.0          # far above everything
    e[300] = 3.0           # above the threshold, but within p of the largest normal error
    e[200] = 2.8
    seqs, below = dt.find_sequences(e, 2.9, padding=5)
    assert seqs.tolist() == [[95, 105], [295, 305]] and below == 2.8
    # mean + 4 std = 2.906: 3.0 is above it, 2.8 is not
    assert 2.8 < dt.fixed_threshold(e) < 3.0
    # drops: 10 -> 3 is .7, 3 -> 2.8 is .067 < .13: the bump at 300 is pruned
    got = dt.find_anomalies(e, fixed=True, padding=5, min_percent=0.13)
    assert [g[:2] for g in got] == [(95, 105)]
    # with p = .05 it stays
    got = dt.find_anomalies(e, fixed=True, padding=5, min_percent=0.05)
    assert [g[:2] for g in got] == [(95, 105), (295, 305)]


def test_windows_follow_orions_loop(monkeypatch):
    seen = []
    monkeypatch.setattr(dt, "window_sequences", lambda w, start, **kw: seen.append((start, len(w))) or [])
    dt.find_anomalies(np.ones(10), window_size=4, window_step=3)
    assert seen == [(0, 4), (3, 4), (6, 4)]  # the third window reaches the end: stop
    seen.clear()
    dt.find_anomalies(np.ones(11), window_size=4, window_step=3)
    assert seen == [(0, 4), (3, 4), (6, 4), (9, 2)]  # a last window cut short at the end
    seen.clear()
    dt.find_anomalies(np.ones(11), window_size=4, window_step=3, lower_threshold=True)
    assert len(seen) == 8  # each window also flipped around its mean


def test_lower_threshold_finds_a_dip():
    e = np.full(300, 5.0) + 0.01 * np.sin(np.arange(300))
    e[150] = 0.0
    assert dt.find_anomalies(e, fixed=True, padding=3) == []
    got = dt.find_anomalies(e, fixed=True, padding=3, lower_threshold=True)
    assert [g[:2] for g in got] == [(147, 153)]


def test_smoothers_are_pandas():
    e = np.random.default_rng(0).random(50)
    np.testing.assert_allclose(dt.ewma(e, 7), pd.Series(e).ewm(span=7, adjust=True).mean())
    np.testing.assert_allclose(dt.rolling_mean(e, 6), pd.Series(e).rolling(6, center=True, min_periods=3).mean())
    assert dt.resolve_size(0.01, 2500) == 25 and dt.resolve_size(0.01, 50) == 1 and dt.resolve_size(7, 50) == 7
    assert dt.resolve_size(0.5, 1000, cap=200) == 200


# -- the scorer ---------------------------------------------------------------------------------
def series(residuals: np.ndarray) -> SeriesScores:
    return SeriesScores(step=(residuals ** 2).mean(axis=1), residuals=residuals, window=np.zeros(0),
                        window_start=np.zeros(0, dtype=np.int64))


def test_scorer_flags_the_intervals_in_time_and_skips_unscored_steps():
    rng = np.random.default_rng(0)
    T, first = 1200, 100
    r = np.full((T, 1), np.nan)
    r[first:, 0] = rng.normal(0, 0.05, T - first)
    r[700:705, 0] = 2.0
    sc = DynamicThresholdScoring(smoothing="ewma", smoothing_window=10, window_size=None, window_step=None,
                                 fixed_threshold=True, anomaly_padding=20)
    out = sc.fit(series(r)).transform(series(r))
    assert np.isnan(out.score[:first]).all() and np.isfinite(out.score[first:]).all()
    np.testing.assert_allclose(out.score[first:], dt.ewma(np.abs(r[first:, 0]), 10))
    assert out.p is None and out.flags.dtype == bool and not out.flags[:first].any()
    # the same intervals as the functions on the scored rows, shifted back to time
    expected = dt.find_anomalies(out.score[first:], fixed=True, padding=20)
    flagged = np.flatnonzero(out.flags)
    assert expected and flagged[0] == first + expected[0][0] and flagged[-1] == first + expected[-1][1]
    assert flagged[0] <= 700 and flagged[-1] >= 704


def test_scorer_averages_absolute_residuals_over_sensors_and_rolls_for_reconstructions():
    r = np.random.default_rng(1).normal(size=(500, 3))
    sc = DynamicThresholdScoring(smoothing="rolling", smoothing_window=0.01, window_size=None, window_step=None)
    out = sc.transform(series(r))
    np.testing.assert_allclose(out.score, dt.rolling_mean(np.abs(r).mean(1), 5))
    assert sc._span_and_window(100_000)[0] == 200  # the rolling window is capped at 200 as in Orion


def test_scorer_resolves_orions_portions():
    sc = DynamicThresholdScoring(window_size=0.33, window_step=0.1)
    assert sc._span_and_window(1000) == (10, 330)
    seen = {}

    def spy(e, **kw):
        seen.update(kw)
        return []

    import madbench.scoring.dynamic_threshold as mod

    real = mod.find_anomalies
    mod.find_anomalies = spy
    try:
        sc.transform(series(np.random.default_rng(2).normal(size=(1000, 1))))
    finally:
        mod.find_anomalies = real
    assert seen["window_size"] == 330 and seen["window_step"] == 33  # ceil(330 * 0.1)


@pytest.mark.parametrize("kw,match", [
    (dict(window_size=5, smoothing_window=10), r"scoring.window_size=5 is shorter than the smoothing span"),
    (dict(window_size=0.005, smoothing_window=0.01), r"scoring.window_size=0.005 is shorter"),
    (dict(smoothing="median"), r"scoring.smoothing='median'"),
    (dict(search="brent"), r"scoring.search='brent'"),
    (dict(window_size=0), r"scoring.window_size=0; expected an integer >= 1 or a ratio"),
    (dict(min_percent=1.5), r"scoring.min_percent=1.5"),
    (dict(anomaly_padding=-1), r"scoring.anomaly_padding=-1"),
    (dict(z_range=[3, 1]), r"scoring.z_range=\[3, 1\]"),
    (dict(fixed_threshold="yes"), r"scoring.fixed_threshold='yes'"),
])
def test_bad_parameters_are_one_line(kw, match):
    with pytest.raises(ConfigError, match=match) as e:
        DynamicThresholdScoring(**kw)
    assert "\n" not in str(e.value)


def test_window_shorter_than_the_span_once_the_steps_are_known():
    sc = DynamicThresholdScoring(window_size=20, smoothing_window=0.05)  # span 50 on 1000 steps
    with pytest.raises(ConfigError, match=r"\(20 < 50 steps of 1000 scored\)") as e:
        sc.transform(series(np.random.default_rng(0).normal(size=(1000, 1))))
    assert "\n" not in str(e.value)
    # no smoothing: no span to compare with
    DynamicThresholdScoring(window_size=5, smoothing_window=10, smoothing="none")


def test_m2ad_protocol_counts_a_scorers_flags_without_p_values():
    """protocol=m2ad with a scorer that gives flags and no p-value (dynamic_threshold): the
    flags are used as they are (no POT calibration of the raw score), and with grouping=none
    each run of flags is one detected interval."""
    from madbench import protocols as P

    T = 600
    labels = np.zeros(T, np.int8)
    labels[100:120] = 1
    labels[400:410] = 1
    flags = np.zeros(T, bool)
    flags[90:130] = True     # overlaps the first event
    flags[250:260] = True    # overlaps nothing
    e = P.EntityScores(name="C-1", labels=labels, score=np.linspace(0, 1, T), train_score=np.zeros(50),
                       val_mask=np.ones(50, bool), window_score=np.zeros(0), window_start=np.zeros(0, np.int64),
                       window=100, flags=flags)
    proto = P.build("m2ad", {"grouping": "none"})
    row = proto.evaluate([e])[0]
    assert (row["event_tp"], row["event_fp"], row["event_fn"]) == (1, 1, 1)
    assert [(a, b) for a, b, _ in proto.detected["C-1"]] == [(90, 129), (250, 259)]
    assert row["detected_fraction"] == pytest.approx(50 / T)


def test_percentile_rule_by_hand_and_the_references_pruning():
    from madbench.scoring.scorers import PercentileThresholdScoring

    train = np.zeros(100)
    s = np.zeros(100)
    s[[20, 70]] = [10.0, 9.8]   # 2 of 200 scores: the 99th percentile of train + test is 0
    got = dt.percentile_anomalies(s, train, anomaly_ratio=1.0, padding=3, min_percent=0.1)
    assert [g[:2] for g in got] == [(17, 23), (67, 73)]
    assert got[0][2] == pytest.approx(10 / 7)  # the mean score over the interval
    # the reference ranks by means (10/7, 9.8/7) with nothing after them: the lowest is dropped
    got = dt.percentile_anomalies(s, train, padding=3, min_percent=0.1, reference_quirks=True)
    assert [g[:2] for g in got] == []      # 10/7 -> 9.8/7 is a 2% drop: the chain prunes both
    s[70] = 5.0
    got = dt.percentile_anomalies(s, train, padding=3, min_percent=0.1, reference_quirks=True)
    assert [g[:2] for g in got] == [(17, 23)]
    # a single interval is always dropped by the reference, kept by default
    s[70] = 0.0
    assert dt.percentile_anomalies(s, train, padding=3, reference_quirks=True) == []
    assert [g[:2] for g in dt.percentile_anomalies(s, train, padding=3)] == [(17, 23)]
    # the scorer: train scores feed the percentile, unscored steps stay unflagged
    step = np.full(110, np.nan)
    step[10:] = s
    sc = PercentileThresholdScoring(anomaly_padding=3).fit(SeriesScores(step=train, residuals=None,
                                                                        window=np.zeros(0), window_start=np.zeros(0)))
    out = sc.transform(SeriesScores(step=step, residuals=None, window=np.zeros(0), window_start=np.zeros(0)))
    assert np.flatnonzero(out.flags).tolist() == list(range(27, 34)) and out.p is None
    with pytest.raises(ConfigError, match=r"scoring.anomaly_ratio=0; expected a percentage"):
        PercentileThresholdScoring(anomaly_ratio=0)
