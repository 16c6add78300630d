"""scoring=m2ad inside real jobs: model-agnostic use, reference vs corrected mode, bad input."""
import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import MinMaxScaler

from madbench import protocols as P
from madbench import api, run
from madbench.checks import validate
from madbench.errors import ConfigError, DataError
from madbench.scoring.base import SeriesScores
from madbench.scoring.scorers import M2ADScoring
from tests.conftest import compose_cfg, stored, script


def series(res):
    return SeriesScores(step=np.nanmean(res ** 2, 1), residuals=res, window=np.zeros(0), window_start=np.zeros(0, int))


def test_m2ad_on_lstm_autoencoder_writes_anomalies_and_sensor_pvalues(tmp_path):
    cfg = compose_cfg(["backbone=lstm_ae", "objective=reconstruct", "scoring=m2ad", "protocol=[strict,m2ad]",
                       "dataset.n_systems=1", "trainer.epochs=1"])
    df = run.main(cfg, tmp_path)
    assert (df.status == "ok").all() and set(df.scoring) == {"m2ad"}
    e = stored(tmp_path)["sys0"]
    p, sp, score = e.p, e.sensor_p, e.score
    assert sp.shape == (400, 8) and p.shape == score.shape == (400,)
    ok = np.isfinite(p)
    assert ok.all()  # a reconstruction scores every step
    assert ((p[ok] >= 0) & (p[ok] <= 1)).all() and (sp >= 1e-16).all()
    # the calibrated p-value falls as the Fisher statistic rises
    order = np.argsort(score)
    assert np.all(np.diff(p[order]) <= 1e-12)
    anomalies = pd.read_csv(tmp_path / "anomalies.csv", keep_default_na=False)
    assert list(anomalies.columns) == ["entity", "start", "end", "score", "top_sensors"]
    assert len(anomalies) > 0  # the loop below must check something
    sensors = e.sensors
    for a in anomalies.itertuples():  # the drivers named are the sensors with the smallest p over the interval
        names = a.top_sensors.split(";")
        assert len(names) == 3 and set(names) <= set(sensors)
        fisher = np.nanmean(-2 * np.log(sp[a.start:a.end + 1].astype(float)), axis=0)
        assert names == [sensors[i] for i in np.argsort(-fisher, kind="stable")[:3]]
    m2ad = df[(df.protocol == "m2ad") & (df.entity == "sys0")].iloc[0]
    assert m2ad.n_detected == len(anomalies)
    flags = e.flags
    assert np.array_equal(flags, p < 0.001)


def test_scoring_m2ad_refused_at_compose_time_without_residuals():
    cfg = compose_cfg(["scoring=m2ad", "backbone=deepsvdd"])
    with pytest.raises(ConfigError, match="scoring=m2ad needs per-sensor residuals, which objective=one_class"):
        validate(cfg)


def _test_series_the_job_saw(monkeypatch, cfg, run_dir) -> np.ndarray:
    """Run the job and return the test series its model was scored on (the second Windows
    the job builds, through madbench.api: train first, then test)."""
    seen = []

    class Recording(api.Windows):
        def __init__(self, series, *a, **kw):
            seen.append(np.array(series[0]))
            super().__init__(series, *a, **kw)

    monkeypatch.setattr(api, "Windows", Recording)
    run.main(cfg, run_dir)
    assert len(seen) == 2
    return seen[1]


#: the M2AD reference's data quirks, as experiment=m2ad_reference sets them (on the dataset,
#: never on a backbone)
DATA_QUIRKS = ["+dataset.refit_scaler_on_test=true", "+dataset.forecast_gap=1", "scoring.reference_quirks=true"]


@pytest.mark.parametrize("quirks", [True, False])
def test_reference_mode_targets_end_plus_one_and_refits_scaler(tmp_path, monkeypatch, quirks):
    flags = DATA_QUIRKS if quirks else []
    cfg = compose_cfg([*flags, "scoring=m2ad", "dataset.n_systems=1", "trainer.epochs=0", "protocol=[m2ad]"])
    seen = _test_series_the_job_saw(monkeypatch, cfg, tmp_path)
    score = stored(tmp_path)["sys0"].score
    w = cfg.dataset.window
    # the authors' target is step end+1: one more unscored step than the corrected default
    lead = w + 1 if quirks else w
    assert np.isnan(score[:lead]).all() and np.isfinite(score[lead:]).all()
    # the authors' scaler is re-fitted on the test data; the corrected one is the train's
    (raw,) = run.load_entities(cfg)
    expected = MinMaxScaler().fit_transform(raw.test) if quirks else MinMaxScaler().fit(raw.train).transform(raw.test)
    np.testing.assert_allclose(seen, expected, rtol=1e-5, atol=1e-6)
    other = MinMaxScaler().fit(raw.train).transform(raw.test) if quirks else MinMaxScaler().fit_transform(raw.test)
    assert np.abs(seen - other).max() > 1e-3  # the two scalings differ on this data


@pytest.mark.parametrize("backbone", ["lstm", "dcdetector"])
def test_a_backbones_reference_quirks_leave_the_data_stages_alone(tmp_path, monkeypatch, backbone):
    """backbone.reference_quirks changes only that backbone: the test split is scaled with
    the train scaler and a forecast targets the next step (no M2AD data quirks leak in;
    the committed DCdetector reference-mode row was once scored with a test-fitted scaler)."""
    cfg = compose_cfg([f"backbone={backbone}", "backbone.reference_quirks=true", "dataset.n_systems=1",
                       "trainer.epochs=0", "protocol=[strict]"])
    seen = _test_series_the_job_saw(monkeypatch, cfg, tmp_path)
    (raw,) = run.load_entities(cfg)
    np.testing.assert_allclose(seen, MinMaxScaler().fit(raw.train).transform(raw.test), rtol=1e-5, atol=1e-6)
    assert np.abs(seen - MinMaxScaler().fit_transform(raw.test)).max() > 1e-3
    step = stored(tmp_path)["sys0"].test.step
    lead = cfg.dataset.window if backbone == "lstm" else 0  # a forecast's first target is step `window`
    assert np.isnan(step[:lead]).all() and np.isfinite(step[lead:]).all()


def test_m2ad_reference_experiment_sets_the_data_quirks_on_the_dataset():
    cfg = compose_cfg(["experiment=m2ad_reference"], tiny=False)
    assert cfg.dataset.refit_scaler_on_test is True and cfg.dataset.forecast_gap == 1
    assert cfg.scoring.reference_quirks is True and cfg.backbone.reference_quirks is False
    for bad, key in (("+dataset.forecast_gap=-1", "dataset.forecast_gap"),
                     ("+dataset.refit_scaler_on_test=3", "dataset.refit_scaler_on_test")):
        with pytest.raises(ConfigError, match=f"^{key}="):
            validate(compose_cfg([bad]))


def test_area_errors_corrected_mode_uses_train_statistics():
    rng = np.random.default_rng(1)
    tr, te = rng.normal(size=(300, 2)), rng.normal(0, 3, size=(300, 2))
    corrected = M2ADScoring(error="area").fit(series(tr))
    quirk = M2ADScoring(error="area", reference_quirks=True).fit(series(tr))
    a, b = corrected._errors(te, fit=False), quirk._errors(te, fit=False)
    # reference: z-scored with the test split's own statistics (mean 0, std 1 over all values)
    assert abs(np.nanmean(b)) < 1e-9 and abs(np.nanstd(b) - 1) < 1e-9
    # corrected: the train statistics, so a noisier test split stays visibly larger
    assert np.nanstd(a) > 1.5


def test_zero_variance_train_score_is_uncalibrated_not_a_crash():
    const = np.full((200, 2), 0.5)
    with pytest.warns(UserWarning):
        sc = M2ADScoring().fit(series(const))
    out = sc.transform(series(const))
    assert out.status == "uncalibrated" and out.notes
    assert np.all(out.p == 1.0) and not out.flags.any()
    e = P.EntityScores(name="flat", labels=np.zeros(200, np.int8), score=out.score, train_score=out.score,
                       val_mask=np.ones(200, bool), window_score=np.zeros(0), window_start=np.zeros(0, int),
                       window=10, p=out.p, flags=out.flags, status=out.status)
    rows = P.build("m2ad", {"range_window": 10}).evaluate([e])
    assert rows[0]["calibration"] == "uncalibrated" and rows[0]["n_detected"] == 0


def test_unknown_sensor_in_groups_lists_available_columns():
    sc = M2ADScoring(weights={"g": {"weight": 1.0, "sensors": ["nope"]}})
    with pytest.raises(ValueError) as e:
        sc.fit(series(np.random.default_rng(0).normal(size=(100, 2))), sensors=["s0", "s1"])
    assert "nope" in str(e.value) and "s0" in str(e.value) and "s1" in str(e.value)


def test_nan_residual_is_refused_with_the_entity_named(tmp_path, monkeypatch):
    from madbench.fit import Trainer

    real = Trainer.score

    def broken(self, *a, **kw):
        out = real(self, *a, **kw)
        for s in out:
            s.residuals[len(s.residuals) // 2, 0] = np.nan  # a hole inside the scored region
        return out

    monkeypatch.setattr(Trainer, "score", broken)
    cfg = compose_cfg(["scoring=m2ad", "dataset.n_systems=1", "trainer.epochs=1"])
    with pytest.raises(DataError) as e:
        run.main(cfg, tmp_path)
    assert "entity sys0" in str(e.value) and "\n" not in str(e.value)
    assert (pd.read_csv(tmp_path / "results.csv").status == "failed").all()


def test_top_sensors_by_hand():
    from madbench.scoring.m2ad import top_sensors

    p = np.array([[0.5, 0.01, 0.2], [0.5, 0.5, 0.001], [np.nan, np.nan, np.nan], [1e-16, 0.9, np.nan]])
    # over rows 0-1: mean -2 ln p per sensor = 1.386, 5.298, 8.517 → c, b, a
    assert top_sensors(p, 0, 1, ["a", "b", "c"]) == ["c", "b", "a"]
    # rows 2-3: row 2 is unscored; sensor c has no scored step there and is left out
    assert top_sensors(p, 2, 3, ["a", "b", "c"], k=3) == ["a", "b"]
    assert top_sensors(p, 2, 2, ["a", "b", "c"]) == []
    with pytest.raises(ValueError, match="sensor_p must be"):
        top_sensors(p, 0, 1, ["a", "b"])


EXPERIMENT_TINY = ["dataset.window=20", "trainer.epochs=1", "trainer.progress=false", "backbone.model.hidden=8",
                   "logger.csv.plots=false"]


@pytest.mark.slow
def test_ablation_experiment_trains_once_and_rescores_every_arm(tmp_path):
    """experiment=m2ad_ablation end to end on the SMD fixture: one job, six arms in the table."""

    from hydra import compose, initialize_config_dir

    from tests.conftest import CONFIGS
    from tests.data.conftest import write_smd

    write_smd(tmp_path / "data" / "SMD")
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=m2ad_ablation", f"paths.data_dir={tmp_path / 'data'}",
                                           *EXPERIMENT_TINY])
    df = run.main(cfg, tmp_path / "sweep" / "0")
    assert (df.status == "ok").all() and set(df.name) == {"m2ad_ablation-gmm+gamma"}
    variants = sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "sweep" / "0" / "rescored").iterdir())
    assert variants == ["distribution-gmm+calibration-chi2", "distribution-gmm+calibration-std4",
                        "distribution-normal+calibration-chi2", "distribution-normal+calibration-gamma",
                        "distribution-normal+calibration-std4"]
    p = script("madbench-tables", "m2ad_ablation", str(tmp_path / "sweep"))
    assert p.returncode == 0, p.stderr
    table = pd.read_csv(tmp_path / "sweep" / "m2ad_ablation.csv")
    assert len(table) == 6 and table.paper_f1_mean.notna().all() and (table.n_entities == df.n_entities.max()).all()


def test_two_sided_true_is_honoured_for_point_errors():
    """scoring.two_sided=true gives the 2024 code's p = 2 min(CDF, 1 - CDF) on point errors;
    null keeps p = 1 - CDF for them. Reference: scipy's normal CDF on pandas' EWM of |r|."""
    from scipy.stats import norm

    rng = np.random.default_rng(3)
    tr, te = rng.normal(size=(400, 1)), rng.normal(0, 2, size=(200, 1))
    errs = pd.DataFrame(np.abs(te)).ewm(com=10).mean().to_numpy()[:, 0]
    for two_sided, expected in ((None, lambda c: 1 - c), (False, lambda c: 1 - c),
                                (True, lambda c: 2 * np.minimum(c, 1 - c))):
        sc = M2ADScoring(error="point", two_sided=two_sided).fit(series(tr))
        mu, sd = sc.scorer_.means_[0, 0], sc.scorer_.sigmas_[0, 0]
        cdf = norm.cdf((errs - mu) / sd)
        got = sc.transform(series(te)).sensor_p[:, 0]
        np.testing.assert_allclose(got, np.maximum(expected(cdf), 1e-16), rtol=1e-9, atol=1e-15)
    # an error far below the train mean is surprising only two-sided
    low = series(np.full((50, 1), 1e-6))
    assert M2ADScoring(two_sided=True).fit(series(tr)).transform(low).sensor_p[-1, 0] < 1e-3
    assert M2ADScoring().fit(series(tr)).transform(low).sensor_p[-1, 0] > 0.999
