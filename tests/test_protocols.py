"""The m2ad protocol on hand-made flags: intervals, event counts and the flagged fraction."""
import numpy as np
import pytest

from madbench import protocols as P
from madbench.errors import ConfigError, DataError


def entity(name, labels, flag_at, T=1000):
    y = np.zeros(T, np.int8)
    for a, b in labels:
        y[a:b + 1] = 1
    flags = np.zeros(T, bool)
    flags[list(flag_at)] = True
    p = np.where(flags, 1e-6, 0.5)
    return P.EntityScores(name=name, labels=y, score=-np.log(p), train_score=np.zeros(10), val_mask=np.ones(10, bool),
                          window_score=np.zeros(0), window_start=np.zeros(0, int), window=10, p=p, flags=flags)


def test_event_counts_and_detected_fraction_by_hand():
    # events [100, 120] and [600, 610]; flags at 130 (→ [80, 180], overlaps the first event)
    # and 400 (→ [350, 450], overlaps nothing): tp 1, fp 1, fn 1; 101 + 101 of 1000 steps flagged
    a = entity("a", [(100, 120), (600, 610)], [130, 400])
    # one flag at 0 → [0, 50], clipped at the start; no event: fp 1
    b = entity("b", [], [0])
    proto = P.build("m2ad", {"range_window": 10, "padding": 50})
    rows = {r["entity"]: r for r in proto.evaluate([a, b])}
    assert (rows["a"]["event_tp"], rows["a"]["event_fp"], rows["a"]["event_fn"]) == (1, 1, 1)
    assert rows["a"]["detected_fraction"] == pytest.approx(202 / 1000)
    assert rows["b"]["detected_fraction"] == pytest.approx(51 / 1000) and rows["b"]["event_fp"] == 1
    assert proto.detected["a"][0][:2] == (80, 180) and proto.detected["b"][0][:2] == (0, 50)
    total = rows["ALL"]
    assert (total["event_tp"], total["event_fp"], total["event_fn"]) == (1, 2, 1)
    assert total["event_f1"] == pytest.approx(2 * 1 / (2 * 1 + 2 + 1))
    assert total["detected_fraction"] == pytest.approx((202 + 51) / 2000)


def test_flagging_everything_is_a_perfect_event_score_and_the_fraction_shows_it():
    """The event-overlap metric's blind spot: one interval over the whole split overlaps every
    event and is itself no false positive. detected_fraction = 1 is the tell."""
    e = entity("all", [(100, 120), (600, 610), (900, 905)], range(0, 1000, 90))
    (row, total) = P.build("m2ad", {"range_window": 10}).evaluate([e])
    assert (row["event_tp"], row["event_fp"], row["event_fn"]) == (3, 0, 0) and row["event_f1"] == 1.0
    assert row["detected_fraction"] == 1.0 and row["n_detected"] == 1


# -- hand-computed cases for every protocol ------------------------------------------------------
# Every number below is worked out in the comments; nothing is recomputed with the code under test.
NAN = np.nan


def scores(name, labels, score, train_score, val_mask=None, window_score=(), window_start=(), window=3,
           window_offsets=None, p=None, flags=None):
    train_score = np.asarray(train_score, float)
    return P.EntityScores(name=name, labels=np.asarray(labels, np.int8), score=np.asarray(score, float),
                          train_score=train_score,
                          val_mask=np.ones(len(train_score), bool) if val_mask is None else np.asarray(val_mask, bool),
                          window_score=np.asarray(window_score, float), window_start=np.asarray(window_start, int),
                          window=window, window_offsets=window_offsets, p=p, flags=flags)


# entity a: validation scores 1..5 (the first five train steps are not validation)
A = dict(labels=[1, 0, 1, 0, 0, 1, 0, 1], score=[NAN, 1.0, 5.0, 4.5, 2.0, 6.0, 3.0, 4.0],
         train_score=[9, 9, 9, 9, 9, 1, 2, 3, 4, 5], val_mask=[0] * 5 + [1] * 5)
# entity b: validation scores all 1
B = dict(labels=[0, 1, 1, 0, 0], score=[0.0, 2.0, 0.5, 0.0, 2.0], train_score=[1.0] * 5)


def test_strict_quantile_threshold_on_validation_scores_only():
    rows = {(r["entity"], r["aggregate"]): r for r in P.build("strict", {"range_window": 2}).evaluate(
        [scores("a", **A), scores("b", **B)])}
    a, b = rows[("a", "")], rows[("b", "")]
    # a: q=0.99 quantile of [1, 2, 3, 4, 5] (linear): position 0.99·4 = 3.96 → 4 + 0.96·1 = 4.96; the
    # train steps at 9 are not validation and do not count
    assert a["threshold"] == pytest.approx(4.96)
    q75 = {(r["entity"], r["aggregate"]): r for r in P.build("strict", {"range_window": 2, "threshold": {
        "method": "quantile", "q": 0.75}}).evaluate([scores("a", **A), scores("b", **B)])}
    a, b = q75[("a", "")], q75[("b", "")]
    # q=0.75: position 3 → 4.0. Scored steps 1..7 (step 0 is NaN: missing, its label ignored):
    #   score  1   5   4.5  2   6   3   4      pred = score > 4
    #   label  0   1   0    0   1   0   1      → tp 2 (5, 6), fp 1 (4.5), fn 1 (4 is not > 4)
    assert a["threshold"] == 4.0 and (a["n_scored"], a["n_missing"]) == (7, 1)
    assert (a["precision"], a["recall"], a["f1"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    # b: threshold 1; pred [0, 1, 0, 0, 1] against [0, 1, 1, 0, 0] → tp 1, fp 1, fn 1
    assert b["threshold"] == 1.0 and (b["precision"], b["recall"], b["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    # point adjustment: b's segment [1, 2] is hit, so both count → tp 2, fp 1, fn 0 → F1 0.8;
    # a's segments are single steps: unchanged, 2/3
    assert (a["pa_f1"], b["pa_f1"]) == pytest.approx((2 / 3, 0.8))
    # micro pools the counts: tp 3, fp 2, fn 2 → P = R = F1 = 0.6; PA: tp 4, fp 2, fn 1 → 8/11
    micro, macro = q75[("ALL", "micro")], q75[("ALL", "macro")]
    assert (micro["precision"], micro["recall"], micro["f1"]) == pytest.approx((0.6, 0.6, 0.6))
    assert micro["pa_f1"] == pytest.approx(8 / 11)
    # macro is the mean of the entity rows: F1 (2/3 + 1/2) / 2 = 7/12, PA F1 (2/3 + 4/5) / 2 = 11/15
    assert (macro["f1"], macro["pa_f1"], macro["precision"]) == pytest.approx((7 / 12, 11 / 15, (2 / 3 + 0.5) / 2))
    assert micro["n_entities"] == macro["n_entities"] == 2 and np.isnan(micro["threshold"])


def test_strict_max_times_factor():
    (a, _, _) = P.build("strict", {"range_window": 2, "threshold": {"method": "max", "factor": 0.9}}).evaluate(
        [scores("a", **A)])
    # max of the validation scores 5 × 0.9 = 4.5; pred = score > 4.5 → steps 2 (5) and 5 (6): tp 2, fp 0,
    # fn 1 (step 7) → P 1, R 2/3, F1 0.8. The 9s outside validation would give 8.1 and predict nothing.
    assert a["threshold"] == pytest.approx(4.5)
    assert (a["precision"], a["recall"], a["f1"]) == pytest.approx((1.0, 2 / 3, 0.8))


def test_window_labels_cover_the_steps_the_score_describes():
    labels = np.zeros(10, np.int8)
    labels[6] = 1
    starts = np.arange(7)  # window 3: a forecaster's windows start at 0..6 (target ≤ 9)
    # forecaster (horizon 1): window s is scored by its target step s + 3, so only s = 3 sees step 6
    np.testing.assert_array_equal(P.window_labels(labels, starts, [3]), [0, 0, 0, 1, 0, 0, 0])
    # M2AD's reference gap (target s + 4, so windows start at 0..5): s = 2
    np.testing.assert_array_equal(P.window_labels(labels, starts[:6], [4]), [0, 0, 1, 0, 0, 0])
    # reconstruction: window s covers s..s+2, so s = 4, 5, 6 contain step 6
    np.testing.assert_array_equal(P.window_labels(labels, starts, [0, 1, 2]), [0, 0, 0, 0, 1, 1, 1])
    # a two-step forecast horizon covers both targets: s + 3 or s + 4 = 6 → s = 2, 3
    np.testing.assert_array_equal(P.window_labels(labels, starts[:6], [3, 4]), [0, 0, 1, 1, 0, 0])
    with pytest.raises(ValueError, match="contiguous"):
        P.window_labels(labels, starts, [0, 2])


def test_madcluster_best_f1_on_the_pr_curve_and_range_metrics_on_the_binarised_prediction():
    # window 2, forecaster: window s is labelled by step s + 2, so the window labels are labels[2:]
    labels = [0, 0, 0, 1, 1, 0, 1, 0]                       # → window labels [0, 1, 1, 0, 1, 0]
    ws = [0.1, 0.8, 0.4, 0.6, 0.3, 0.2]
    e = scores("a", labels, [NAN, NAN] + ws, [0.0], window_score=ws, window_start=range(6), window=2,
               window_offsets=np.array([2]))
    row, total = P.build("madcluster", {"range_window": 2}).evaluate([e])
    # thresholds from the top: ≥.8 tp1 fp0 fn2 F1 .5 | ≥.6 tp1 fp1 F1 .4 | ≥.4 tp2 fp1 fn1 F1 2/3
    #                          ≥.3 tp3 fp1 fn0 F1 6/7 | ≥.2 tp3 fp2 F1 .75 | ≥.1 tp3 fp3 F1 2/3
    assert row["threshold"] == 0.3 and (row["precision"], row["recall"], row["f1"]) == pytest.approx((0.75, 1, 6 / 7))
    assert row["threshold_uses_test_labels"] is True
    # AUC-ROC on the window scores: positive > negative in 3 + 2 + 2 of 9 pairs
    assert row["auc_roc"] == pytest.approx(7 / 9)
    # R-AUC-ROC of the binarised prediction [0, 1, 1, 1, 1, 0] at window 2: the extended label is
    # [r, 1, 1, 1, 1, r] with r = √½ (step 3 gets two r's, clipped to 1); P_new = (3 + 4 + 2r) / 2.
    # Threshold 1: TP 4, TPR 4 / P_new, FPR 0. Threshold 0: TPR 1, FPR (6 − 4 − 2r) / (6 − P_new).
    r = np.sqrt(0.5)
    p_new = (3 + 4 + 2 * r) / 2
    tpr, fpr = 4 / p_new, (6 - 4 - 2 * r) / (6 - p_new)
    assert row["r_auc_roc"] == pytest.approx(fpr * (tpr + 1) / 2 + (1 - fpr))
    # ... which is not the value of the raw window scores
    assert row["r_auc_roc"] != pytest.approx(P.M.range_auc([0, 1, 1, 0, 1, 0], ws, 2)["r_auc_roc"])
    assert total["f1"] == pytest.approx(6 / 7) and total["aggregate"] == "mean"


def test_tslib_percentile_of_train_and_test_then_point_adjustment():
    e = scores("a", labels=[1, 0, 1, 1, 1, 0, 0], score=[NAN, 1, 8, 2, 7, 3, 6], train_score=[1, 2, 3, 4],
               val_mask=[0, 0, 0, 0])
    row, total = P.build("tslib", {"range_window": 2}).evaluate([e], anomaly_ratio=25)
    # the 75th percentile of the 10 finite train + test scores [1 1 2 2 3 3 4 6 7 8] (linear):
    # position 0.75·9 = 6.75 → 4 + 0.75·(6 − 4) = 5.5; labels play no part
    assert row["threshold"] == pytest.approx(5.5) and row["threshold_uses_test_labels"] is False
    # scored steps 1..6: pred [0, 1, 0, 1, 0, 1] against [0, 1, 1, 1, 0, 0] → tp 2, fp 1, fn 1
    assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    # point adjustment: the segment [2, 4] is hit → tp 3, fp 1, fn 0 → F1 6/7 (TSLib's reported F1)
    assert row["pa_f1"] == pytest.approx(6 / 7) and total["pa_f1"] == pytest.approx(6 / 7)
    with pytest.raises(P.ConfigError, match="anomaly_ratio"):
        P.build("tslib", {}).evaluate([e])


def _label_blind_entities(labels_at):
    """Two entities whose scores, train scores and p-values are fixed; only the labels vary."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(2):
        T = 300
        score = rng.normal(size=T)
        score[[50, 200]] = 8.0  # far above every validation score: empirical p = 1/2001
        labels = np.zeros(T, np.int8)
        labels[labels_at] = 1
        out.append(scores(f"e{i}", labels, score, rng.normal(size=2000), window_score=score[:-1],
                          window_start=np.arange(T - 1), window=1, window_offsets=np.array([0])))
    return out


def test_only_madcluster_thresholds_move_with_the_test_labels():
    """threshold_uses_test_labels as a behaviour: perturb the test labels only, and only the
    protocol that says it uses them changes its threshold."""
    order = np.argsort(-_label_blind_entities([])[0].window_score)
    a = _label_blind_entities(order[:5])       # labels on the 5 highest window scores of e0
    b = _label_blind_entities(order[5:20])     # ... moved to the next 15
    for name, params in [("strict", {"range_window": 2}), ("m2ad", {"range_window": 2}), ("tslib", {"range_window": 2}),
                         ("madcluster", {"range_window": 2})]:
        pa, pb = P.build(name, params), P.build(name, params)
        if name == "m2ad":  # it counts the scoring stage's alarms: here the same calibration of both
            for x in a + b:
                calibrate(x, calibration="empirical")  # p = 1/2001 at the bursts
        ra, rb = pa.evaluate(a, anomaly_ratio=1.0), pb.evaluate(b, anomaly_ratio=1.0)
        thr_a = np.array([r["threshold"] for r in ra if r["entity"] != "ALL"], float)
        thr_b = np.array([r["threshold"] for r in rb if r["entity"] != "ALL"], float)
        uses = {r["threshold_uses_test_labels"] for r in ra + rb}
        assert uses == {name == "madcluster"}, name
        if name == "madcluster":
            assert thr_a[0] != thr_b[0], "the best-F1 threshold is chosen on the test labels"
        else:
            np.testing.assert_array_equal(thr_a, thr_b, err_msg=name)
        if name == "m2ad":  # what must not move is what it flags
            assert pa.detected == pb.detected and [s for s, *_ in pa.detected["e0"]] == [0, 150]


def test_madcluster_labels_a_forecasters_window_by_its_target_step(tmp_path):
    """Bug: a forecaster's window score is its error at the target step start + window, but the
    window label covered [start, start + window), so the scored step was outside its own label.
    Hand case through the score stage and the job's post-score stages: a model that predicts 0
    everywhere, a series that is 0 except 3 at step 6, labelled anomalous exactly there."""
    from madbench.data.windows import Windows, WindowSpec
    from madbench.detector import Detector
    from madbench.fit import Trainer
    from madbench.objectives.forecast import ForecastObjective
    from madbench.results import RunResults
    from tests.conftest import compose_cfg
    from tests.test_fit import Zero

    x = np.zeros((10, 1), np.float32)
    x[6] = 3.0
    labels = np.zeros(10, np.int8)
    labels[6] = 1
    spec = WindowSpec(window=3, horizon=1)
    (te,) = Trainer(epochs=0, device="cpu", progress=False).score(Detector(Zero(1, 1), ForecastObjective()),
                                                                  Windows(x, spec), np.arange(1), np.arange(1))
    # windows start at 0..6; window s scores step s + 3, so only window 3 sees the 3² = 9
    np.testing.assert_array_equal(te.window, [0, 0, 0, 9, 0, 0, 0])
    results = RunResults(compose_cfg(["protocol=[madcluster]", "protocol.madcluster.range_window=2"]), tmp_path)
    results.add_scores("a", labels, ["s0"], None, te, te, np.ones(10, bool), 3, {})
    (row, _) = results.evaluate_protocols()
    # window labels [0, 0, 0, 1, 0, 0, 0]: the one window with the error is the one anomalous window
    assert (row["precision"], row["recall"], row["f1"], row["threshold"]) == (1.0, 1.0, 1.0, 9.0)


# -- scoring=raw under m2ad: where the p-value comes from (issue 16) -------------------------
def raw_entity(n_val=412, seed=0):
    """A raw score (no p-values of its own, as scoring=raw): validation scores from a
    half-normal null, test scores from the same null plus one burst far above every
    validation score (an event at 700-720)."""
    rng = np.random.default_rng(seed)
    T = 1000
    y = np.zeros(T, np.int8)
    y[700:721] = 1
    score = np.abs(rng.normal(size=T))
    score[700:721] += 8.0
    val = np.abs(rng.normal(size=n_val))
    return P.EntityScores(name="C-1", labels=y, score=score, train_score=val, val_mask=np.ones(n_val, bool),
                          window_score=np.zeros(0), window_start=np.zeros(0, int), window=10)


def calibrate(e, **params):
    """The scoring stage's part (scoring=raw with scoring.calibration): p-values and alarms
    from the validation scores, which protocol m2ad then groups and counts."""
    from madbench.scoring.base import SeriesScores
    from madbench.scoring.scorers import RawScorer

    def series(x):
        return SeriesScores(step=np.asarray(x, float), residuals=None, window=np.zeros(0), window_start=np.zeros(0, int))
    scorer = RawScorer(**params).fit(series(e.train_score), val_mask=e.val_mask)
    out = scorer.transform(series(e.score))
    e.p, e.flags, e.status = out.p, out.flags, out.status
    return e


def test_raw_scores_under_m2ad_are_calibrated_by_a_fitted_tail():
    """With 412 validation steps the empirical p-value is never below 1/413 = 0.0024 > alpha
    = 0.001, so nothing could ever be flagged; the POT tail reaches below it and finds the
    burst that lies above every validation score."""
    e = raw_entity()
    assert (e.score[700:721] > e.train_score.max()).all()
    (row, total) = P.build("m2ad", {"range_window": 10}).evaluate([calibrate(e, calibration="pot")])
    assert row["calibration"] == "ok" and row["n_detected"] >= 1 and row["event_tp"] == 1
    with pytest.raises(ValueError) as info:
        calibrate(raw_entity(), calibration="empirical")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("scoring.calibration=empirical cannot raise an alarm")
    assert "1/413 = 0.0024, not below scoring.alpha=0.001" in msg and "use scoring.calibration=pot" in msg
    # with enough validation steps (or a larger alpha) the empirical p-value can flag, and it does
    (row, _) = P.build("m2ad", {"range_window": 10}).evaluate([calibrate(raw_entity(), calibration="empirical",
                                                                         alpha=0.01)])
    assert row["event_tp"] == 1


def test_uncalibrated_raw_scores_are_refused_by_m2ad_and_none_is_the_default():
    """scoring=raw alone (calibration none) gives a score and no alarm: protocol m2ad has
    nothing to count and says how to get alarms, instead of flagging by some threshold."""
    e = calibrate(raw_entity())
    assert e.flags is None and e.p is None
    with pytest.raises(DataError) as info:
        P.build("m2ad", {"range_window": 10}).evaluate([e])
    assert "scoring.calibration=pot" in str(info.value) and "\n" not in str(info.value)


def test_raw_scores_whose_validation_tail_cannot_be_fitted_flag_nothing_for_that_entity_only():
    """A constant score, or a count with a few distinct values (the trivial baselines), has
    no tail to fit: that entity is uncalibrated (nothing flagged, its row says so, as M2AD's
    zero variance) and the other entities are evaluated as usual."""
    good = raw_entity()
    flat = raw_entity(seed=1)
    flat.name, flat.train_score = "C-2", np.ones(412)
    counts = raw_entity(seed=2)
    counts.name, counts.train_score = "C-3", np.repeat([0.0, 1.0, 2.0], [400, 8, 4])
    rows = P.build("m2ad", {"range_window": 10}).evaluate([calibrate(x, calibration="pot") for x in (good, flat, counts)])
    by = {r["entity"]: r for r in rows}
    assert by["C-1"]["calibration"] == "ok" and by["C-1"]["event_tp"] == 1
    for name in ("C-2", "C-3"):
        assert by[name]["calibration"] == "uncalibrated" and by[name]["n_detected"] == 0
        assert by[name]["event_tp"] == 0 and by[name]["event_fn"] == 1
    assert by["ALL"]["event_tp"] == 1 and by["ALL"]["event_fn"] == 2


@pytest.mark.parametrize("params, message", [
    ({"calibration": "gamma"}, "scoring.calibration='gamma'; expected one of none, pot, empirical"),
    ({"alpha": 1.5}, "scoring.alpha=1.5; expected a ratio in (0, 1)"),
    ({"pot_level": 0}, "scoring.pot_level=0; expected a ratio in (0, 1)"),
])
def test_raw_scoring_calibration_keys_are_checked(params, message):
    from madbench.scoring.scorers import RawScorer
    with pytest.raises(ConfigError) as info:
        RawScorer(**params)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("name, params, message", [
    ("m2ad", {"gruping": "forward"}, "protocol.m2ad.gruping: unknown key; expected one of range_window, padding, "
                                     "grouping, bridge"),
    ("m2ad", {"grouping": "backward"}, "protocol.m2ad.grouping='backward'; expected one of padding, forward, none"),
    ("m2ad", {"grouping": "forward", "bridge": -1}, "protocol.m2ad.bridge=-1; expected an integer >= 0"),
    ("m2ad", {"padding": -5}, "protocol.m2ad.padding=-5; expected an integer >= 0"),
    ("m2ad", {"bridge": 2.5}, "protocol.m2ad.bridge=2.5; expected an integer >= 0"),
    ("m2ad", {"alpha": 0.01}, "protocol.m2ad.alpha: unknown key; expected one of range_window"),
    ("tslib", {"range_window": "abc"}, "protocol.tslib.range_window='abc'; expected an integer >= 1"),
    ("strict", {"threshold": {"method": "foo"}}, "protocol.strict.threshold.method='foo'; expected one of"),
    ("strict", {"threshold": {"quantile": 0.9}}, "protocol.strict.threshold.quantile: unknown key"),
    ("madcluster", {"alpha": 0.1}, "protocol.madcluster.alpha: unknown key; expected one of range_window"),
    ("tslib", {"q": 0.9}, "protocol.tslib.q: unknown key; expected one of range_window"),
])
def test_protocol_keys_and_values_are_checked_when_built(name, params, message):
    with pytest.raises(ConfigError) as info:
        P.build(name, params)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_forward_and_none_groupings_by_hand():
    # event [100, 120]; flags at 90 and 130, 300 and 301
    e = entity("a", [(100, 120)], [90, 130, 300, 301])
    # forward, bridge 40: 130 <= 90 + 40 joins → [90, 170] (tp, 81 steps); 301 joins 300 → [300, 341] (fp, 42 steps)
    rows = {r["entity"]: r for r in P.build("m2ad", {"grouping": "forward", "bridge": 40}).evaluate([e])}
    assert (rows["a"]["event_tp"], rows["a"]["event_fp"], rows["a"]["event_fn"], rows["a"]["n_detected"]) == (1, 1, 0, 2)
    assert rows["a"]["detected_fraction"] == pytest.approx((81 + 42) / 1000)
    # bridge 39: 130 > 90 + 39, so [90, 129] and [130, 169] both overlap the event: still one tp, no fp there
    proto = P.build("m2ad", {"grouping": "forward", "bridge": 39})
    proto.evaluate([e])
    assert [d[:2] for d in proto.detected["a"]] == [(90, 129), (130, 169), (300, 340)]
    # none: four flags → [90], [130] (both miss the event), [300, 301]: tp 0, fp 3, fn 1
    (row, _) = P.build("m2ad", {"grouping": "none"}).evaluate([e])
    assert (row["event_tp"], row["event_fp"], row["event_fn"]) == (0, 3, 1)
    assert row["detected_fraction"] == pytest.approx(4 / 1000)
