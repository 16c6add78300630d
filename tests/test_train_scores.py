"""score_train: the train split is scored only as far as a later stage reads it (issue 27).

The reference is the same job with ``score_train=all``: the steps a stage reads must be
scored bit-identically, every result row must be equal, and a re-scoring or protocol that
reads more than was kept is refused in one line."""
import numpy as np
import pytest

import madbench
from madbench import rescoring as E
from madbench import run, rundir
from madbench import train_scores as TS
from madbench.data.windows import Windows, WindowSpec
from madbench.errors import ConfigError, DataError
from madbench.scoring.base import SeriesScores
from tests.conftest import compose_cfg



def _arrays(seed=0, T=400, D=3):
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None]
    x = np.sin(t / 7.0 + np.arange(D)) + 0.1 * rng.standard_normal((T, D))
    return x.astype(np.float32)


SMALL = {"dataset": {"window": 10, "stride": 2}, "trainer": {"epochs": 1, "progress": False}}


def _metric_frame(df):
    num = [c for c in df.columns if df[c].dtype.kind in "fi" and "seconds" not in c]
    return df[num].astype(float).to_numpy()


# -- what each config reads ------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, level", [
    ([], "validation"),                                                     # raw + strict: strict's threshold
    (["protocol=[madcluster]"], "none"),                                   # raw alone, best F1 on test
    (["scoring.calibration=pot", "protocol=[m2ad]"], "validation"),        # the POT tail on validation
    (["scoring=m2ad", "protocol=[m2ad]"], "all"),                          # GMMs on every train residual
    (["scoring=dynamic_threshold", "protocol=[m2ad]"], "none"),            # telemanom: test windows only
    (["scoring=percentile_threshold", "protocol=[m2ad]"], "all"),          # train + test percentile
    (["protocol=[strict,tslib]"], "all"),                                  # tslib: train + test percentile
    (["protocol=[madcluster]", "score_train=all"], "all"),
    (["protocol=[madcluster]", "rescore=[\"head.score=backbone\"]"], "all"),   # a variant may re-fit any scorer
])
def test_the_level_is_what_the_scoring_and_protocols_read(overrides, level):
    got, reasons = TS.needed(compose_cfg(overrides))
    assert got == level
    assert bool(reasons) == (level != "none")


def test_a_bad_score_train_is_one_line():
    with pytest.raises(ConfigError, match=r"^score_train='some'; expected one of auto, all$"):
        TS.needed(compose_cfg(["score_train=some"]))


# -- the windows that are scored -------------------------------------------------------------------
def test_covering_keeps_every_window_that_scores_a_step_from_first_on():
    x = np.zeros((20, 1), dtype=np.float32)
    rec = Windows([x, x[:12]], WindowSpec(window=5))            # reconstruction: a window scores its 5 steps
    kept = rec.covering(np.array([10, 12]))
    # series 0: starts 0..15, last step start+4 >= 10 -> starts 6..15; series 1 (12 steps, starts
    # 0..7) scores nothing from step 12 on, so only its last window is kept
    assert kept.local_start[kept.series_id == 0].tolist() == list(range(6, 16))
    assert kept.local_start[kept.series_id == 1].tolist() == [7]
    fc = Windows([x], WindowSpec(window=5, horizon=1, gap=1))   # forecast: scores step start+6
    assert fc.covering(np.array([10])).local_start.tolist() == list(range(4, 14))


def test_unscored_before_cuts_every_placed_part_and_keeps_the_window_scores():
    T = 6
    s = SeriesScores(step=np.arange(T, dtype=float), residuals=np.ones((T, 2)), window=np.array([1.0, 2.0]),
                     window_start=np.array([0, 1]), factor=np.full(T, 2.0),
                     components={"backbone": np.arange(T, dtype=float), "head": np.full(T, 2.0)},
                     window_components={"backbone": np.array([1.0, 2.0]), "head": np.array([2.0, 2.0])})
    c = s.unscored_before(4)
    assert np.isnan(c.step[:4]).all() and c.step[4:].tolist() == [4.0, 5.0]
    assert np.isnan(c.residuals[:4]).all() and (c.residuals[4:] == 1).all()
    assert np.isnan(c.components["backbone"][:4]).all() and np.isnan(c.factor[:4]).all()
    assert c.factor is c.components["head"]
    assert c.window.tolist() == [1.0, 2.0]
    assert s.step[0] == 0.0  # a copy: the input is left as it was


# -- a fit scores what is read, and nothing else changes ----------------------------------------------
def _fit(n=2, **kw):
    det = madbench.Detector("lstm", seed=0, **{**SMALL, **kw})
    return det.fit([_arrays(i) for i in range(n)] if n > 1 else _arrays(0))


def test_a_validation_level_fit_scores_the_validation_steps_identically_and_gives_equal_rows():
    part, full = _fit(), _fit(score_train="all")
    assert part.train_scored_ == "validation" and full.train_scored_ == "all"
    for fp, ff in zip(part.fitted_[0].entities, full.fitted_[0].entities):
        a, b, m = fp["scoring"].train_.step, ff["scoring"].train_.step, fp["val_mask"]
        np.testing.assert_array_equal(a[m], b[m])                   # bit-identical where read
        assert np.isnan(a[~m]).all() and np.isfinite(b[~m][20:]).all()
        assert np.isnan(fp["scoring"].train_.residuals[~m]).all()
    tests = [_arrays(2), _arrays(3)]
    labels = [np.r_[np.zeros(300), np.ones(20), np.zeros(80)].astype(int)] * 2
    np.testing.assert_array_equal(_metric_frame(part.evaluate(tests, labels)),
                                  _metric_frame(full.evaluate(tests, labels)))


def test_a_fit_that_reads_nothing_scores_no_train_step():
    det = _fit(1, scoring="dynamic_threshold", protocol="m2ad")
    assert det.train_scored_ == "none"
    tr = det.fitted_[0].entities[0]["scoring"].train_
    assert np.isnan(tr.step).all() and np.isnan(tr.residuals).all()
    assert tr.residuals.shape == (len(tr.step), 3)                  # the parts are still there, unscored
    full = _fit(1, scoring="dynamic_threshold", protocol="m2ad", score_train="all")
    labels = np.r_[np.zeros(300), np.ones(20), np.zeros(80)].astype(int)
    np.testing.assert_array_equal(_metric_frame(det.evaluate(_arrays(2), labels)),
                                  _metric_frame(full.evaluate(_arrays(2), labels)))


def test_evaluating_with_a_protocol_that_reads_more_than_the_fit_kept_is_one_line():
    det = _fit(1)
    labels = np.zeros(400, dtype=int)
    with pytest.raises(DataError, match=r"^this detector's fit: kept the validation steps' train scores only .*"
                                        r"protocol=tslib reads every train score; fit again with score_train=all$"):
        det.evaluate(_arrays(2), labels, protocols=["tslib"])
    full = _fit(1, score_train="all")
    assert set(full.evaluate(_arrays(2), labels, protocols=["tslib"]).protocol) == {"tslib"}


# -- run dirs: recorded, migrated, re-scorings refused --------------------------------------------
@pytest.fixture(scope="module")
def strict_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("strict") / "run"
    run.main(compose_cfg(["trainer.epochs=1"]), d)
    return d


def test_a_run_dir_records_its_level_and_refuses_a_rescoring_that_reads_more(strict_run):
    assert rundir.read_scores(strict_run).train_scored == "validation"
    assert rundir.read_train_scored(strict_run) == "validation"
    with pytest.raises(DataError, match=r"scores.npz: kept the validation steps' train scores only .*"
                                        r"scoring=m2ad \(its fit\) reads every train score; fit again with score_train=all$"):
        E.rescore(strict_run, ["scoring=m2ad"])
    assert not (strict_run / "rescored").exists()
    # what reads only the validation steps still re-scores
    out, df = E.rescore(strict_run, ["scoring.calibration=pot", "protocol=[strict,m2ad]"])
    assert (df.status == "ok").all() and rundir.read_train_scored(out) == "validation"


def test_runs_before_the_key_read_as_fully_scored(tmp_path):
    from tests.conftest import v1_run

    d = v1_run(tmp_path)
    assert rundir.read_scores(d).train_scored == "all" and rundir.read_train_scored(d) == "all"
    assert rundir.migrate_config(compose_cfg([])).score_train == "auto"
    from omegaconf import OmegaConf

    old = OmegaConf.create(OmegaConf.to_container(compose_cfg([])))
    del old["score_train"]
    assert rundir.migrate_config(old).score_train == "all"
