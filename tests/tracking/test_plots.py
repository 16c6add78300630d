"""Each entity's plot shows every requested protocol's decision: the threshold line of a
threshold protocol, the detected intervals of m2ad, and the points each one predicted.
Plots used to draw the strict threshold only, whatever protocols the run asked for."""
import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.patches import Rectangle

from madbench import protocols as P
from madbench.results import RunResults
from madbench.tracking import plots
from tests.conftest import compose_cfg


def _entity(seed=0):
    rng = np.random.default_rng(seed)
    y = np.zeros(300, np.int8)
    y[150:165] = 1
    score = rng.random(300)
    score[150:165] += 2.0
    score[:10] = np.nan  # the first steps carry no score
    flags = np.zeros(300, bool)
    flags[[152, 160, 250]] = True
    starts = np.arange(0, 281)
    window_score = np.array([np.nanmean(score[s:s + 20]) if np.isfinite(score[s:s + 20]).any() else np.nan
                             for s in starts])
    return P.EntityScores(name="sys0", labels=y, score=score, train_score=rng.random(200),
                          val_mask=np.r_[np.zeros(100, bool), np.ones(100, bool)], window_score=window_score,
                          window_start=starts, window=20, window_offsets=np.arange(20), flags=flags)


def _scatter(ax):
    """The predicted points drawn on ``ax`` as (x, y) rows."""
    pts = [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
    assert len(pts) == 1
    return np.asarray(pts[0])


def _hlines(ax):
    return [ln.get_ydata()[0] for ln in ax.lines if len(set(ln.get_ydata())) == 1 and ln.get_ls() == "--"]


def _green_spans(ax):
    """The detected intervals drawn on ``ax``: green (tab:green) rectangles as [x0, x1)."""
    green = (0.17254901960784313, 0.6274509803921569, 0.17254901960784313)
    return sorted((int(p.get_x()), int(p.get_x() + p.get_width())) for p in ax.patches
                  if isinstance(p, Rectangle) and np.allclose(p.get_facecolor()[:3], green))


def test_every_requested_protocol_is_drawn_with_its_own_decision(tmp_path, monkeypatch):
    cfg = compose_cfg(["protocol=[strict,tslib,madcluster,m2ad]", "scoring.calibration=pot", "logger.csv.plots=true"])
    res = RunResults(cfg, tmp_path)
    e = _entity()
    res.entity_scores = [e]
    drawn = {}
    monkeypatch.setattr("madbench.results.plot_entity",
                        lambda path, name, score, labels, decisions: drawn.setdefault(name, decisions) and path)
    df = res.finalize(res.evaluate_protocols(), "ok", "", 0.0)
    assert (df.status == "ok").all()
    res.plots()
    ds = drawn["sys0"]
    assert [d.protocol for d in ds] == ["strict", "tslib", "madcluster", "m2ad"]
    row = df[df.entity == "sys0"].set_index("protocol")
    ok = np.isfinite(e.score)
    for d in ds[:2]:  # a step-score threshold: the row's threshold, and the steps above it
        thr = row.loc[d.protocol, "threshold"]
        assert d.threshold == pytest.approx(thr)
        np.testing.assert_array_equal(d.x[d.predicted], np.flatnonzero(ok & (np.nan_to_num(e.score, nan=-1) > thr)))
    assert ds[0].threshold != pytest.approx(ds[1].threshold)  # validation quantile vs train+test percentile
    mc = ds[2]  # window scores at the last step each describes, predicted at or above the best-F1 threshold
    wok = np.isfinite(e.window_score)
    assert mc.threshold == pytest.approx(row.loc["madcluster", "threshold"])
    np.testing.assert_array_equal(mc.x, e.window_start[wok] + 19)
    np.testing.assert_array_equal(mc.predicted, e.window_score[wok] >= mc.threshold)
    m2 = ds[3]  # ±50 padding around the alarms at 152, 160 and 250, merged: [102, 210] and [200, 299] merge too
    assert m2.threshold is None
    assert sorted((a, b) for a, b in m2.intervals) == [(102, 299)]
    np.testing.assert_array_equal(np.flatnonzero(m2.predicted), np.arange(102, 300))
    assert [(a["start"], a["end"]) for a in res.anomalies] == [(102, 299)]


def test_the_figure_has_a_panel_per_protocol_with_its_line_points_and_intervals():
    e = _entity()
    ok = np.isfinite(e.score)
    x = np.flatnonzero(ok)
    s = e.score[ok]
    decisions = [P.Decision("strict", x, s, 1.5, s > 1.5),
                 P.Decision("madcluster", e.window_start + 19, e.window_score, 0.9, e.window_score >= 0.9),
                 P.Decision("m2ad", np.arange(300), e.score, None, np.r_[np.zeros(140, bool), np.ones(30, bool),
                                                                          np.zeros(130, bool)], [(140, 169)])]
    fig = plots.entity_figure("sys0", e.score, e.labels, decisions)
    axes = fig.axes
    assert [a.get_ylabel() for a in axes] == ["strict", "madcluster", "m2ad"]
    assert _hlines(axes[0]) == [1.5] and _hlines(axes[1]) == [0.9] and _hlines(axes[2]) == []
    np.testing.assert_array_equal(_scatter(axes[0])[:, 0], x[s > 1.5])
    wpred = e.window_score >= 0.9
    np.testing.assert_array_equal(_scatter(axes[1])[:, 0], (e.window_start + 19)[wpred])
    np.testing.assert_allclose(_scatter(axes[1])[:, 1], e.window_score[wpred])
    assert _green_spans(axes[2]) == [(140, 170)] and _green_spans(axes[0]) == []
    assert len(_scatter(axes[2])) == 30 - int(np.isnan(e.score[140:170]).sum())
    plots._pyplot().close(fig)


def test_the_png_is_written_with_the_decisions(tmp_path):
    e = _entity()
    ok = np.isfinite(e.score)
    d = P.Decision("strict", np.flatnonzero(ok), e.score[ok], 1.5, e.score[ok] > 1.5)
    path = plots.plot_entity(tmp_path / "plots" / "sys0.png", "sys0", e.score, e.labels, [d])
    assert path.stat().st_size > 5000
