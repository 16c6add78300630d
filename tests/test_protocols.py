"""The m2ad protocol on hand-made flags: intervals, event counts and the flagged fraction."""
import numpy as np
import pytest

from madbench import protocols as P


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
    proto = P.build("m2ad", {"window": 10, "padding": 50})
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
    (row, total) = P.build("m2ad", {"window": 10}).evaluate([e])
    assert (row["event_tp"], row["event_fp"], row["event_fn"]) == (3, 0, 0) and row["event_f1"] == 1.0
    assert row["detected_fraction"] == 1.0 and row["n_detected"] == 1


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


@pytest.mark.parametrize("params,key", [
    ({"grouping": "backward"}, "protocol.m2ad.grouping=backward"),
    ({"grouping": "forward", "bridge": -1}, "protocol.m2ad.bridge=-1"),
    ({"padding": -5}, "protocol.m2ad.padding=-5"),
    ({"bridge": 2.5}, "protocol.m2ad.bridge=2.5"),
    ({"gruping": "forward"}, "protocol.m2ad.gruping: unknown key"),
    ({"q": 0.9}, None),
])
def test_bad_protocol_parameters_are_one_line_errors_naming_the_key(params, key):
    from madbench.errors import ConfigError

    name = "m2ad" if key else "tslib"
    with pytest.raises(ConfigError) as e:
        P.build(name, params)
    msg = str(e.value)
    assert msg.startswith(key or "protocol.tslib.q: unknown key") and "\n" not in msg and "expected" in msg
