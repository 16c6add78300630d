"""Sensor attribution (madbench/attribution.py) through every path that makes or keeps it:
ground truth from the loaders (1-based SMD dims → 0-based sensors), residual / p-value /
gradient attributions, the config key, the job's result columns, scores.npz, re-scoring and
the attribution table."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import open_dict

from madbench import attribution as A
from madbench import run
from madbench.checks import validate
from madbench.config import config_hash
from madbench.data.entity import Entity
from madbench.data.smd import load_smd
from madbench.errors import ConfigError, DataError
from tests.conftest import compose_cfg, stored
from tests.data.conftest import write_smd


def _entity(meta, sensors=("a", "b", "c"), covariates=("u",)):
    cols = list(sensors) + list(covariates)
    return Entity(name="e", system="x", train=np.zeros((5, len(cols))), test=np.zeros((30, len(cols))),
                  labels=np.zeros(30), columns=cols, sensors=list(sensors), covariates=list(covariates), meta=meta)


# -- ground truth ----------------------------------------------------------------------------
def test_smd_one_based_dims_map_to_zero_based_sensors(tmp_path):
    root = write_smd(tmp_path / "SMD")
    by_name = {e.name: e for e in load_smd(root)}
    # machine-1-2: "0-5:1,3" and "50-60:38" (end exclusive, dims 1-based)
    spans, sets = A.truth(by_name["machine-1-2"])
    assert spans.tolist() == [[0, 4], [50, 59]]
    assert np.flatnonzero(sets[0]).tolist() == [0, 2]          # dims 1, 3 → dim_0, dim_2
    assert np.flatnonzero(sets[1]).tolist() == [37]            # dim 38 → dim_37, the last column
    assert [by_name["machine-1-2"].sensors[j] for j in np.flatnonzero(sets[0])] == ["dim_0", "dim_2"]
    assert A.truth(by_name["machine-2-1"]) is None             # no interpretation_label file


def test_truth_from_event_sensors_drops_covariates_keeps_empty_sets():
    e = _entity({"events": [{"start": 2, "end": 4, "sensors": ["c", "u"]},      # u is a covariate
                            {"start": 8, "end": 9, "sensors": None},            # unknown: not ground truth
                            {"start": 12, "end": 13, "sensors": []}]})          # empty: kept, skipped later
    spans, sets = A.truth(e)
    assert spans.tolist() == [[2, 4], [12, 13]]
    assert sets.tolist() == [[False, False, True], [False, False, False]]
    assert A.truth(_entity({"events": [{"start": 1, "end": 2, "kind": "x"}]})) is None


def test_needed_steps_are_labelled_steps_inside_spans():
    labels = np.zeros(12, dtype=int)
    labels[[1, 2, 3, 7, 8]] = 1
    spans = np.array([[2, 5], [8, 8]])
    assert np.flatnonzero(A.needed_steps(labels, spans)).tolist() == [2, 3, 8]


def test_pvalue_and_residual_attribution():
    p = np.array([[1.0, 0.5, 1e-16]])
    np.testing.assert_allclose(A.from_pvalues(p), [[0.0, -2 * math.log(0.5), -2 * math.log(1e-16)]])
    assert A.from_residuals(np.array([[-2.0, 1.0]])).tolist() == [[2.0, 1.0]]


def test_pvalue_attribution_orders_sensors_below_the_clip():
    """Two sensors beyond the 1e-16 clip tie in sensor_p; the unclipped ln p orders them."""
    from madbench.scoring.base import SeriesScores
    from madbench.scoring.scorers import M2ADScoring

    rng = np.random.default_rng(0)
    train = SeriesScores(step=np.zeros(500), residuals=rng.normal(0, 0.1, (500, 4)), window=np.zeros(0),
                         window_start=np.zeros(0, dtype=int))
    res = rng.normal(0, 0.1, (300, 4))
    res[200:220, 1] += 5.0          # both far beyond the clip (z >> 8) after smoothing
    res[200:220, 3] += 9.0
    test = SeriesScores(step=np.zeros(300), residuals=res, window=np.zeros(0), window_start=np.zeros(0, dtype=int))
    scorer = M2ADScoring(com=0.0).fit(train)
    out = scorer.transform(test)
    assert (out.sensor_p[205:220, [1, 3]] == 1e-16).all()
    a = A.compute("pvalue", None, out.sensor_p, None, out.sensor_logp)
    assert (np.argsort(-a[205:220], axis=1, kind="stable")[:, :2] == [3, 1]).all()
    # the clipped p-values alone would tie and leave the order to the sensor index
    clipped = A.compute("pvalue", None, out.sensor_p, None)
    assert (np.argsort(-clipped[205:220], axis=1, kind="stable")[:, :2] == [1, 3]).all()


# -- the config key ----------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, expect", [
    (["attribution=bogus"], "attribution='bogus'; expected one of"),
    (["attribution=pvalue"], "attribution=pvalue needs the per-sensor p-values of scoring=m2ad"),
    (["backbone=deepsvdd", "attribution=residual"], "attribution=residual needs per-sensor residuals"),
])
def test_bad_attribution_is_one_line_config_error(overrides, expect):
    with pytest.raises(ConfigError, match=expect) as e:
        validate(compose_cfg(overrides))
    assert "\n" not in str(e.value)


def test_auto_resolves_per_scoring_and_objective():
    assert A.resolve(compose_cfg([])) == "residual"
    assert A.resolve(compose_cfg(["scoring=m2ad"])) == "pvalue"
    assert A.resolve(compose_cfg(["backbone=deepsvdd"])) == "gradient"
    assert A.resolve(compose_cfg(["attribution=none"])) == "none"


def test_auto_keeps_the_config_hash_of_runs_before_the_key():
    cfg = compose_cfg([])
    old = cfg.copy()
    with open_dict(old):
        old.pop("attribution")
    assert config_hash(cfg) == config_hash(old)
    assert config_hash(compose_cfg(["attribution=residual"])) != config_hash(cfg)


# -- gradient attribution ----------------------------------------------------------------------
def _reference_gradients(detector, series, spec, input_cols, sensor_cols, needed):
    """The definition one window at a time, slicing the series by hand."""
    n_s = len(sensor_cols)
    offsets = spec.score_offsets()
    acc, cnt = np.zeros((len(series), n_s)), np.zeros(len(series))
    for start in range(len(series) - spec.span + 1):
        pos = start + offsets
        if not needed[pos].any():
            continue
        x = torch.tensor(series[start:start + spec.window][:, input_cols], requires_grad=True)
        y_rows = series[pos] if spec.horizon else series[start:start + spec.window]
        y = torch.tensor(y_rows[:, sensor_cols], requires_grad=True)
        step, _, _ = detector.score({"x": x[None], "y": y[None]}, detector(x[None]))
        gx, gy = torch.autograd.grad(step.sum(), [x, y], allow_unused=True)
        gy = torch.zeros_like(y) if gy is None else gy       # Deep SVDD's score never reads the targets
        sal = (gx[:, :n_s].abs().sum(0) + gy.abs().sum(0)) if spec.horizon else (gx[:, :n_s] + gy).abs().sum(0)
        for t in pos[needed[pos]]:
            acc[t] += sal.detach().numpy()
            cnt[t] += 1
    out = np.full(acc.shape, np.nan)
    out[cnt > 0] = acc[cnt > 0] / cnt[cnt > 0, None]
    return out


@pytest.mark.parametrize("backbone", ["lstm", "lstm_ae", "deepsvdd"])
def test_gradient_attribution_matches_the_per_window_definition(backbone):
    import madbench
    from madbench.data.windows import Windows

    rng = np.random.default_rng(0)
    series = rng.normal(size=(40, 5)).astype(np.float32)      # 3 sensors (cols 0, 2, 4) + 2 covariates
    cols = [f"c{j}" for j in range(5)]
    entity = Entity(name="e", system="e", train=series, test=series, labels=np.zeros(40), columns=cols,
                    sensors=["c0", "c2", "c4"], covariates=["c1", "c3"])
    sensor_cols, input_cols = entity.sensor_idx, entity.input_idx
    assert list(input_cols) == [0, 2, 4, 1, 3]
    api = madbench.Detector.from_config(compose_cfg([f"backbone={backbone}", "dataset.window=8"])).prepare()
    detector = api.new_model(entity)   # untrained, as the job builds it (seed 0)
    if backbone == "deepsvdd":
        detector.objective.c = torch.ones(api.config_.backbone.model.rep)
    detector.eval()
    spec = api.score_spec_   # the windows the job scores (and attributes) on: stride 1
    assert (spec.window, spec.stride) == (8, 1)
    needed = np.zeros(40, dtype=bool)
    needed[[12, 13, 14, 30]] = True
    got = A.window_gradients(detector, api.trainer_, Windows([series], spec), input_cols, sensor_cols, needed,
                             batch_size=3)
    ref = _reference_gradients(detector, series.astype(np.float64).astype(np.float32), spec, input_cols, sensor_cols,
                               needed)
    assert np.isnan(got[~needed]).all()
    np.testing.assert_allclose(got[needed], ref[needed], rtol=1e-4, atol=1e-6)
    assert (got[needed] > 0).all()


# -- through a job -------------------------------------------------------------------------------
def _write_injected(root, n_sensors=8, train=600, test=400, span=(200, 239), hit=(2, 5)):
    """Sines of different periods and phases; in test, +3 (raw units) on sensors ``hit``."""
    rng = np.random.default_rng(0)
    cols = [f"s{i}" for i in range(n_sensors)]
    for split, n, t0 in (("train", train, 0), ("test", test, train)):
        t = np.arange(t0, t0 + n)[:, None]
        x = np.sin(2 * np.pi * t / (20 + 3 * np.arange(n_sensors)) + np.arange(n_sensors)) \
            + 0.05 * rng.normal(size=(n, n_sensors))
        if split == "test":
            x[span[0]:span[1] + 1, list(hit)] += 3.0
        d = root / "systems" / "inj"
        d.mkdir(parents=True, exist_ok=True)
        df = pd.DataFrame(x, columns=cols)
        df.insert(0, "timestamp", t[:, 0])
        df.to_csv(d / f"{split}.csv", index=False)
    names = ";".join(cols[i] for i in hit)
    (root / "labels.csv").write_text(f"system,start,end,kind,sensors\ninj,{train + span[0]},{train + span[1]},"
                                     f"level_shift,{names}\n")
    return root


@pytest.mark.parametrize("backbone", ["lstm", "lstm_ae"])
def test_injected_anomaly_on_sensors_2_and_5_is_attributed_to_them(tmp_path, backbone):
    _write_injected(tmp_path / "multisystem")
    cfg = compose_cfg(["dataset=multisystem", f"paths.data_dir={tmp_path}", f"backbone={backbone}",
                       "dataset.window=20", "trainer.epochs=3"])
    df = run.main(cfg, tmp_path / "run")
    row = df[(df.entity == "inj") & (df.protocol == "strict")].iloc[0]
    assert row.attribution == "residual"
    assert row.interp_steps == 40 and row.interp_events == 1
    # the two shifted sensors rank first at every labelled step
    assert row.hit_100 == 1.0 and row.ndcg_100 == pytest.approx(1.0)
    x = stored(tmp_path / "run")["inj"].extras
    assert x["attribution"].shape == (40, 8)                        # only the steps the metrics use
    assert x["attribution_steps"].tolist() == list(range(200, 240))
    top2 = np.argsort(-x["attribution"], axis=1, kind="stable")[:, :2]
    assert (np.sort(top2, axis=1) == [2, 5]).all()


@pytest.fixture(scope="module")
def smd_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_smd(root / "SMD")
    d = tmp_path_factory.mktemp("run")
    cfg = compose_cfg(["dataset=smd", f"paths.data_dir={root}", "dataset.window=10", "trainer.epochs=1",
                       "scoring=m2ad", "protocol=[strict,m2ad]", "logger.csv.plots=true"])
    df = run.main(cfg, d)
    return cfg, d, df


def test_smd_job_reports_attribution_columns(smd_run):
    cfg, d, df = smd_run
    strict = df[df.protocol == "strict"].set_index("entity")
    assert strict.loc["machine-1-2", "attribution"] == "pvalue"
    # machine-1-2: events 0..4 (first window unscored: window 10, forecast) and 50..59, both labelled
    assert strict.loc["machine-1-2", "interp_events"] == 1 and strict.loc["machine-1-2", "interp_events_skipped"] == 1
    assert strict.loc["machine-1-2", "interp_steps"] == 10
    assert 0.0 <= strict.loc["machine-1-2", "hit_100"] <= 1.0
    # no interpretation_label: the columns stay empty
    assert pd.isna(strict.loc["machine-2-1", "hit_100"]) and pd.isna(strict.loc["machine-2-1", "attribution"])
    # ALL pools the steps of the machines that have ground truth
    steps = strict.drop(index="ALL").interp_steps.fillna(0).sum()
    assert (df[df.entity == "ALL"].interp_steps == steps).all()
    # the same values under every protocol (they use no threshold)
    m2ad = df[df.protocol == "m2ad"].set_index("entity")
    assert m2ad.loc["machine-1-2", "hit_100"] == strict.loc["machine-1-2", "hit_100"]
    assert (d / "plots" / "machine-1-2_attribution.png").exists()


def test_rescoring_rebuilds_residual_attribution_and_reevaluation_keeps_it(smd_run):
    from madbench.rescoring import reevaluate, rescore

    cfg, d, df = smd_run
    out, variant = rescore(d, ["attribution=residual"])
    row = variant[(variant.entity == "machine-1-2") & (variant.protocol == "strict")].iloc[0]
    assert row.attribution == "residual" and row.interp_steps == 10
    e = stored(d)["machine-1-2"]
    res = np.abs(e.test.residuals[e.extras["attribution_steps"]])
    np.testing.assert_allclose(stored(out)["machine-1-2"].extras["attribution"], res, rtol=1e-6)
    again = reevaluate(d, ["protocol=[strict]"])
    cols = ["entity", "aggregate", "attribution", "hit_100", "hit_150", "ndcg_100", "interp_steps", "interp_events"]
    key = ["entity", "aggregate"]
    before = df[df.protocol == "strict"][cols].sort_values(key, na_position="first").reset_index(drop=True)
    after = again[cols].sort_values(key, na_position="first").reset_index(drop=True)
    pd.testing.assert_frame_equal(after, before, check_dtype=False)
    assert after.interp_steps.notna().any()


def test_gradient_needs_the_model_when_rescoring(smd_run):
    from madbench.rescoring import rescore

    _, d, _ = smd_run
    with pytest.raises(DataError, match="attribution=gradient needs the trained model"):
        rescore(d, ["attribution=gradient"])


def test_attribution_table(smd_run, tmp_path):
    from madbench import reports

    _, d, df = smd_run
    t = reports.REPORTS["attribution"].compute(df, None)
    assert len(t) == 1
    r = t.iloc[0]
    assert (r.backbone, r.scoring, r.attribution, r.entities) == ("lstm", "m2ad", "pvalue", 2)
    per = df[(df.protocol == "strict") & (df.entity != "ALL")].dropna(subset=["hit_100"])
    assert r.hit_100 == pytest.approx(np.average(per.hit_100, weights=per.interp_steps))
    reports.main(["attribution", str(d), "--out", str(tmp_path)])
    assert (tmp_path / "attribution.md").exists()
