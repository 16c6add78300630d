"""HitRate@P% and NDCG@P% of a sensor ranking against ground-truth sensor sets: hand-computed
cases, ties, the step/event aggregation, and sklearn's ndcg_score as the reference."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from madbench.metrics.interpretation import event_parts, hit_rate, ndcg, rank_sensors, step_metrics, summarise

LOG2_3 = math.log2(3)


def _mask(s, idx):
    m = np.zeros(s, dtype=bool)
    m[list(idx)] = True
    return m


def test_hand_computed_ranking():
    # ranking 0, 2, 4, 3, 5, 1; truth {0, 3, 5}
    a = np.array([0.9, 0.1, 0.8, 0.3, 0.7, 0.2])
    g = _mask(6, [0, 3, 5])
    assert rank_sensors(a).tolist() == [0, 2, 4, 3, 5, 1]
    assert hit_rate(a, g, 100) == pytest.approx(1 / 3)      # top 3 = {0, 2, 4}: one hit
    assert hit_rate(a, g, 150) == pytest.approx(2 / 3)      # top floor(4.5) = 4 adds sensor 3
    idcg = 1 + 1 / LOG2_3 + 1 / 2
    assert ndcg(a, g, 100) == pytest.approx(1 / idcg)        # relevance 1, 0, 0 in the top 3
    assert ndcg(a, g, 150) == pytest.approx((1 + 1 / math.log2(5)) / idcg)


def test_perfect_and_worst_rankings():
    a = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    assert hit_rate(a, _mask(5, [0, 1]), 100) == 1.0 and ndcg(a, _mask(5, [0, 1]), 100) == pytest.approx(1.0)
    assert hit_rate(a, _mask(5, [3, 4]), 100) == 0.0 and ndcg(a, _mask(5, [3, 4]), 100) == 0.0
    # 150 % of 2 is 3 candidates: still none of {3, 4}
    assert hit_rate(a, _mask(5, [3, 4]), 150) == 0.0
    # the cut-off is capped at the number of sensors: |G| = 5, 150 % -> 5
    assert hit_rate(a, np.ones(5, dtype=bool), 150) == 1.0


def test_ties_are_broken_by_sensor_index():
    # all equal: the ranking is 0, 1, 2, 3
    a = np.zeros(4)
    g = _mask(4, [1, 3])
    assert hit_rate(a, g, 100) == 0.5          # top 2 = {0, 1}
    assert hit_rate(a, g, 150) == 0.5          # top 3 = {0, 1, 2}
    assert ndcg(a, g, 100) == pytest.approx((1 / LOG2_3) / (1 + 1 / LOG2_3))
    # a tie at the top: sensor 1 (lower index) before sensor 2
    b = np.array([1.0, 5.0, 5.0, 0.0])
    assert rank_sensors(b).tolist() == [1, 2, 0, 3]
    assert hit_rate(b, _mask(4, [2]), 100) == 0.0
    # floor(1.5 · 1) = 1 (TranAD's round(1.5) = 2 would count the hit)
    assert hit_rate(b, _mask(4, [2]), 150) == 0.0
    assert hit_rate(b, _mask(4, [1]), 100) == 1.0


def test_nan_ranks_last_and_empty_truth_is_nan():
    a = np.array([np.nan, 1.0, 2.0])
    assert rank_sensors(a).tolist() == [2, 1, 0]
    assert hit_rate(a, _mask(3, [0]), 100) == 0.0
    assert math.isnan(hit_rate(a, np.zeros(3, dtype=bool), 100))
    assert math.isnan(ndcg(a, np.zeros(3, dtype=bool), 100))


def _brute_hit(scores, truth, p):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    g = {i for i, t in enumerate(truth) if t}
    k = min(math.floor(p * len(g) / 100), len(scores))
    return len(set(order[:k]) & g) / len(g)


def test_vectorised_rows_match_the_definition_and_sklearn():
    rng = np.random.default_rng(0)
    n, s = 300, 12
    a = rng.normal(size=(n, s))            # continuous: no ties, so sklearn's tie averaging does not apply
    g = rng.random((n, s)) < 0.25
    g[np.arange(n), rng.integers(0, s, n)] = True
    for p in (100, 150):
        h = hit_rate(a, g, p)
        assert h == pytest.approx([_brute_hit(a[i], g[i], p) for i in range(n)])
        nd = ndcg(a, g, p)
        ref = [ndcg_score(g[i][None].astype(float), a[i][None], k=min(math.floor(p * g[i].sum() / 100), s))
               for i in range(n)]
        assert nd == pytest.approx(ref, abs=1e-12)
    # integer scores with ties: the brute force with the index tie-break still agrees
    b = rng.integers(0, 3, size=(n, s)).astype(float)
    assert hit_rate(b, g, 100) == pytest.approx([_brute_hit(b[i], g[i], 100) for i in range(n)])


def test_step_metrics_columns():
    a = np.array([[0.9, 0.1, 0.8], [0.0, 1.0, 0.5]])
    g = np.array([[True, False, False], [True, True, False]])
    m = step_metrics(a, g)
    assert m["hit_100"].tolist() == [1.0, 0.5]
    assert m["hit_150"].tolist() == [1.0, 1.0]   # k = floor(1.5) = 1, and k = 3: every sensor
    assert m["ndcg_100"] == pytest.approx([1.0, (1.0) / (1 + 1 / LOG2_3)])


def test_events_steps_skips_and_overlaps():
    s = 4
    labels = np.zeros(20, dtype=int)
    labels[2:6] = 1          # event A: span 2..6, step 6 unlabelled (span ∩ labels = 2..5)
    labels[10:13] = 1        # event B: empty sensor set -> skipped and counted
    labels[15:18] = 1        # events C (15..17, {0}) and D (16..16, {3}) overlap at step 16
    spans = np.array([[2, 6], [10, 12], [15, 17], [16, 16]])
    sets = np.array([_mask(s, [0, 1]), _mask(s, []), _mask(s, [0]), _mask(s, [3])])
    steps = np.arange(20)
    att = np.tile(np.array([4.0, 3.0, 2.0, 1.0]), (20, 1))   # ranking 0, 1, 2, 3 everywhere
    att[3] = np.nan                                          # an unscored step: left out
    att[6] = [0.0, 0.0, 0.0, 9.0]                            # unlabelled: never used
    parts = event_parts(att, steps, labels, spans, sets)
    # used steps: A 2, 4, 5 (hit 1); C 15, 17 (hit 1), 16 with G = {0, 3}: top 2 = {0, 1} -> 0.5
    assert parts["steps"]["hit_100"].tolist() == [1.0, 1.0, 1.0, 1.0, 0.5, 1.0]
    assert parts["skipped"] == 1
    # events: A 1.0, C mean(1, .5, 1), D (step 16 only) 0.5
    assert parts["events"]["hit_100"] == pytest.approx([1.0, 2.5 / 3, 0.5])
    out = summarise([parts])
    assert out["hit_100"] == pytest.approx(5.5 / 6)
    assert out["hit_100_event"] == pytest.approx((1.0 + 2.5 / 3 + 0.5) / 3)
    assert (out["interp_steps"], out["interp_events"], out["interp_events_skipped"]) == (6, 3, 1)


def test_summarise_pools_steps_over_entities():
    one = {"steps": {c: np.array([1.0, 1.0, 1.0]) for c in ("hit_100", "hit_150", "ndcg_100")},
           "events": {c: np.array([1.0]) for c in ("hit_100", "hit_150", "ndcg_100")}, "skipped": 0}
    two = {"steps": {c: np.array([0.0]) for c in ("hit_100", "hit_150", "ndcg_100")},
           "events": {c: np.array([0.0]) for c in ("hit_100", "hit_150", "ndcg_100")}, "skipped": 2}
    out = summarise([one, two])
    assert out["hit_100"] == 0.75 and out["hit_100_event"] == 0.5 and out["interp_events_skipped"] == 2
    empty = summarise([])
    assert math.isnan(empty["hit_100"]) and empty["interp_steps"] == 0
