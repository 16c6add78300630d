"""madbench.Detector, the Python API (madbench/api.py; issue 29): the CLI's job and a
notebook meet there, so its rows must be the job's rows, and its errors the job's errors."""
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import precision_score, recall_score
from sklearn.model_selection import ParameterGrid

import madbench
from madbench import rundir, run
from madbench.api import options, record_device_type
from madbench.config import build, config_hash
from madbench.data.preprocess import Preprocessor
from madbench.data.synthetic import load
from madbench.data.windows import Windows, WindowSpec
from madbench.errors import ConfigError, DataError
from tests.conftest import compose_cfg

README = Path(__file__).resolve().parents[1] / "README.md"


def tiny(**kw):
    """A Detector at the CPU-test sizes (configs/debug/tiny.yaml), one epoch."""
    kw.setdefault("trainer", {"epochs": 1})
    return madbench.Detector(debug="tiny", **kw)


def systems(n_systems=1, n_covariates=0):
    """The synthetic systems debug=tiny loads (400/400 steps, 8 sensors, seed 0)."""
    return load(n_systems=n_systems, n_sensors=8, n_covariates=n_covariates, train_len=400, test_len=400, seed=0)


def comparable(df: pd.DataFrame, names: dict | None = None) -> pd.DataFrame:
    """Result rows without what differs between two runs of the same job (ids, clocks)."""
    drop = [c for c in df if c in ("run_id", "finished_at", "total_seconds") or c.endswith("_seconds")]
    out = df.drop(columns=drop).reset_index(drop=True)
    if names:
        out["entity"] = out["entity"].replace(names)
    return out


# -- acceptance: the API's rows are the CLI job's rows ------------------------------------------
@pytest.mark.slow
def test_residual_backbone_with_m2ad_gives_the_jobs_rows_and_scores(tmp_path):
    job = run.main(compose_cfg(["scoring=m2ad", "protocol=[strict,m2ad,tslib]", "trainer.epochs=1"]), tmp_path / "job")
    det = tiny(backbone="lstm", scoring="m2ad", protocol=["strict", "m2ad", "tslib"])
    # Entity objects (the loader's output): covariates are inputs only, M2AD weighs the sensor groups they name
    ents = systems(2, n_covariates=4)
    rows = det.fit(ents).evaluate(ents)
    assert rows.config_hash.iloc[0] == job.config_hash.iloc[0]   # the keywords compose the job's config
    assert set(rows.protocol) == {"strict", "m2ad", "tslib"} and (rows.status == "ok").all()
    pd.testing.assert_frame_equal(comparable(rows), comparable(job))
    # the per-timestamp outputs are the run dir's: scores, per-sensor residuals, M2AD's p-values
    kept = {e.name: e for e in rundir.read_scores(tmp_path / "job").entities}
    for got in det.score(ents):
        np.testing.assert_array_equal(got.score, kept[got.name].score)
        np.testing.assert_array_equal(got.p, kept[got.name].p)
        np.testing.assert_array_equal(got.flags, kept[got.name].flags)
        np.testing.assert_allclose(got.residuals, kept[got.name].test.residuals, rtol=1e-6)   # stored as float32
        assert got.residuals.shape == (400, 8) and got.sensors == [f"s{i}" for i in range(8)]
        assert np.isnan(got.score[:20]).all() and np.isfinite(got.score[20:]).all()     # a forecaster's first window


@pytest.mark.slow
def test_plain_arrays_give_the_jobs_rows(tmp_path):
    """Arrays carry no names, covariates, sensor groups or ground-truth sensors: on data
    that has none (no covariates, a scoring that reads no groups) they are the job's
    entities, with the attribution metrics (which need the ground truth) left empty."""
    job = run.main(compose_cfg(["protocol=[strict,tslib]", "dataset.n_covariates=0", "trainer.epochs=1"]),
                   tmp_path / "job")
    det = tiny(protocol=["strict", "tslib"], dataset={"n_covariates": 0})
    ents = systems(2)
    det.fit([e.train for e in ents])
    rows = det.evaluate([e.test for e in ents], [e.labels for e in ents])
    assert rows.config_hash.iloc[0] == job.config_hash.iloc[0]
    # the series are named series0, series1 (the job's are the systems' names)
    truth = [c for c in job if c == "attribution" or c.startswith(("hit_", "ndcg_", "interp_"))]
    assert truth and job[truth].notna().any().all() and rows[truth].isna().all().all()
    pd.testing.assert_frame_equal(comparable(rows.drop(columns=truth), {"series0": "sys0", "series1": "sys1"}),
                                  comparable(job.drop(columns=truth)))


@pytest.mark.slow
def test_head_backbone_with_madcluster_on_entities_gives_the_jobs_rows(tmp_path):
    job = run.main(compose_cfg(["backbone=deepsvdd", "head=madcluster", "protocol=[strict,madcluster]",
                                "trainer.epochs=1"]), tmp_path / "job")
    det = tiny(backbone="deepsvdd", head="madcluster", protocol=["strict", "madcluster"])
    ents = systems(2, n_covariates=4)   # Entity objects: their covariates are inputs only, as in the job
    rows = det.fit(ents).evaluate(ents)
    assert rows.config_hash.iloc[0] == job.config_hash.iloc[0]
    pd.testing.assert_frame_equal(comparable(rows), comparable(job))
    assert det.score(ents)[0].series.score_mode == "product"


def test_fit_and_score_are_the_stages_wired_by_hand():
    """The one hand-wired reference left: scale on train, window, Trainer.fit, Trainer.score."""
    det = tiny(backbone="lstm")
    (e,) = systems()
    got = det.fit(e.train).score(e.test)

    cfg = det.config_
    run.seed_everything(int(cfg.seed))
    model = run.build_detector(cfg, 8, 8, cfg.dataset.window)
    pre = Preprocessor(scaler=cfg.dataset.scaler).fit(e.train)
    spec = WindowSpec(window=cfg.dataset.window, stride=cfg.dataset.stride, horizon=model.objective.horizon)
    trainer = build(cfg.trainer, "trainer")
    cols = np.arange(8)
    hist = trainer.fit(model, Windows([pre.transform(e.train)], spec), cols, cols)
    (ref,) = trainer.score(model, Windows([pre.transform(e.test, is_test=True)],
                                          WindowSpec(window=spec.window, horizon=spec.horizon)), cols, cols)
    np.testing.assert_array_equal(got.step, ref.step)
    np.testing.assert_array_equal(got.score, ref.step)   # scoring=raw, calibration none: the step score itself
    np.testing.assert_array_equal(got.residuals, ref.residuals)
    assert [h["train_loss"] for h in det.history_] == [h["train_loss"] for h in hist]
    assert det.decision_function(e.test).tolist() == pytest.approx(got.score.tolist(), nan_ok=True)


def test_trainer_deterministic_reaches_the_fit_and_a_bad_value_is_refused():
    """The fit seeds the generators with torch's deterministic algorithms as
    trainer.deterministic says (auto: on on the CPU), so no caller sets them itself."""
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    try:
        for value, expected in (("auto", True), (False, False), (True, True), (False, False)):
            tiny(trainer={"epochs": 0, "device": "cpu", "deterministic": value}).fit(systems()[0].train)
            assert torch.are_deterministic_algorithms_enabled() is expected, value
    finally:
        torch.use_deterministic_algorithms(before, warn_only=True)
    with pytest.raises(ConfigError, match=r"^trainer\.deterministic='sometimes'; expected auto, true or false$"):
        tiny(trainer={"deterministic": "sometimes"}).fit(systems()[0].train)


def test_new_model_is_the_untrained_model_fit_group_trains():
    """new_model (for what drives single training steps itself: scripts/bench_zoo_at_thoc.py)
    builds the model as fit seeds and builds it: with no epoch, fit_group's model is it."""
    import torch

    (e,) = systems()
    det = tiny(trainer={"epochs": 0, "device": "cpu"}).prepare()
    fresh = det.new_model(e)
    fitted = det.fit_group([e], "sys0")
    got, want = fitted.model.state_dict(), fresh.state_dict()
    assert list(got) == list(want) and all(torch.equal(got[k].cpu(), want[k]) for k in want)
    other = tiny(trainer={"epochs": 0, "device": "cpu"}, seed=1).prepare().new_model(e)
    assert not all(torch.equal(other.state_dict()[k], want[k]) for k in want)


def test_predict_is_the_rows_threshold_decision():
    (e,) = systems()
    det = tiny(protocol=["strict", "tslib"]).fit(e.train)
    rows = det.evaluate(e.test, e.labels).set_index(["entity", "protocol"])
    score = det.score(e.test).score
    ok = np.isfinite(score)
    strict = det.predict(e.test)                       # the default protocol: strict
    assert strict.dtype == bool and not strict[~ok].any()
    np.testing.assert_array_equal(strict[ok], score[ok] > rows.loc[("series", "strict"), "threshold"])
    # ... and the row's point metrics are that decision's (sklearn, on the scored steps)
    assert rows.loc[("series", "strict"), "precision"] == pytest.approx(precision_score(e.labels[ok], strict[ok]))
    assert rows.loc[("series", "strict"), "recall"] == pytest.approx(recall_score(e.labels[ok], strict[ok]))
    tslib = det.predict(e.test, protocol="tslib")
    np.testing.assert_array_equal(tslib[ok], score[ok] > rows.loc[("series", "tslib"), "threshold"])
    with pytest.raises(ConfigError, match="^protocol=madcluster picks its threshold by the best F1 on the test labels"):
        det.predict(e.test, protocol="madcluster")


# -- sklearn -------------------------------------------------------------------------------------
def test_get_params_round_trips_and_clone_gives_an_unfitted_equal_detector():
    det = madbench.Detector("anomaly_transformer", head="madcluster", scoring="m2ad", trainer={"epochs": 3})
    params = det.get_params()
    assert params["backbone"] == "anomaly_transformer" and params["trainer"] == {"epochs": 3}
    assert madbench.Detector(**params).get_params() == params
    twin = clone(det)
    assert twin is not det and twin.get_params() == params
    # the keywords are the job `madbench backbone=anomaly_transformer head=madcluster scoring=m2ad trainer.epochs=3`
    cli = compose_cfg(["backbone=anomaly_transformer", "head=madcluster", "scoring=m2ad", "trainer.epochs=3"],
                      tiny=False)
    record_device_type(cli)
    assert config_hash(twin.get_config()) == config_hash(det.get_config()) == config_hash(cli)
    # set_params changes the clone alone, as sklearn's search tools use it
    assert twin.set_params(seed=3).seed == 3 and det.seed is None
    assert twin.get_config().seed == 3
    hashes = {config_hash(clone(det).set_params(**p).get_config()) for p in ParameterGrid({"seed": [0, 1]})}
    assert len(hashes) == 2


def test_a_clone_of_a_fitted_detector_is_unfitted():
    det = tiny().fit(systems()[0].train)
    with pytest.raises(NotFittedError, match="not fitted yet; call fit"):
        clone(det).score(systems()[0].test)


def test_from_config_keeps_the_composed_config():
    cfg = compose_cfg(["backbone=deepsvdd", "trainer.epochs=1"])
    det = madbench.Detector.from_config(cfg)
    assert det.get_config().backbone.name == "deepsvdd"
    assert config_hash(clone(det).get_config()) == config_hash(det.get_config())   # the config is deep-copied
    assert madbench.Detector(config=cfg, trainer={"epochs": 2}).get_config().trainer.epochs == 2
    with pytest.raises(ConfigError, match=r"^backbone='lstm': Detector\(config=...\) keeps the composed config's"):
        madbench.Detector(config=cfg, backbone="lstm").get_config()


# -- save / load ---------------------------------------------------------------------------------
def test_a_saved_detector_loads_and_scores_identically(tmp_path):
    ents = systems(2)
    det = tiny(scoring="m2ad", protocol=["strict", "m2ad"]).fit([e.train for e in ents])
    det.save(tmp_path / "det")
    assert config_hash(rundir.read_config(tmp_path / "det")) == config_hash(det.config_)
    back = madbench.Detector.load(tmp_path / "det")
    tests = [e.test for e in ents]
    for a, b in zip(det.score(tests), back.score(tests)):
        for field in ("score", "p", "flags", "sensor_p", "residuals", "step"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    labels = [e.labels for e in ents]
    pd.testing.assert_frame_equal(comparable(det.evaluate(tests, labels)), comparable(back.evaluate(tests, labels)))
    assert back.history_ == det.history_


def test_load_refuses_a_config_changed_after_saving(tmp_path):
    det = tiny().fit(systems()[0].train)
    det.save(tmp_path / "det")
    cfg = rundir.read_config(tmp_path / "det")
    cfg.seed = 7
    rundir.write_config(tmp_path / "det", cfg)
    with pytest.raises(DataError, match=r"config\.yaml: config_hash .* differs .* the config was changed after"):
        madbench.Detector.load(tmp_path / "det")
    (tmp_path / "det" / "model.pt").unlink()
    rundir.write_config(tmp_path / "det", det.config_)
    with pytest.raises(DataError, match=r"det/model\.pt: missing; expected the model\.pt that madbench.Detector.save"):
        madbench.Detector.load(tmp_path / "det")


# -- bad input: one line naming the argument -----------------------------------------------------
def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and msg
    return msg


def test_wrong_shapes_are_refused_naming_the_argument():
    det = tiny()
    with pytest.raises(DataError, match=r"^X: expected a float array \[T, D\] .* got shape \(400,\) \(one sensor: "
                                        r"x\.reshape\(-1, 1\)\)") as e:
        det.fit(np.zeros(400))
    one_line(e)
    with pytest.raises(DataError, match=r"^X\[1\]: expected a float array \[T, D\] .* got shape \(2, 200, 3\)") as e:
        det.fit([np.zeros((400, 3)), np.zeros((2, 200, 3))])
    one_line(e)
    with pytest.raises(DataError, match="^X: expected a float array"):
        det.fit("not an array")
    det.fit(systems()[0].train)
    with pytest.raises(DataError, match="^X: 3 columns; the detector was fitted on 8") as e:
        det.score(np.zeros((400, 3)))
    one_line(e)
    with pytest.raises(DataError, match="^X: 2 series; the detector was fitted on 1"):
        det.score([np.zeros((400, 8))] * 2)
    with pytest.raises(DataError, match=r"^labels: shape \(5,\); expected 400 labels"):
        det.evaluate(np.zeros((400, 8)), np.zeros(5))


def test_nan_in_the_train_array_is_refused_naming_where():
    x = systems()[0].train.copy()
    x[5, 1] = np.nan
    with pytest.raises(DataError, match=r"^X: 1 value\(s\) are NaN or infinite, the first at row 5, column 1; "
                                        "expected finite values") as e:
        tiny().fit(x)
    one_line(e)


def test_fewer_rows_than_the_window_are_refused_naming_the_window():
    with pytest.raises(DataError, match=r"^X: train has 15 rows; expected at least 22 for dataset.window=20") as e:
        tiny().fit(np.random.default_rng(0).random((15, 3)))
    one_line(e)
    det = tiny().fit(np.random.default_rng(0).random((100, 3)))
    with pytest.raises(DataError, match=r"^X: test has 10 rows; expected at least 21 for dataset.window=20"):
        det.score(np.random.default_rng(1).random((10, 3)))


def test_an_unknown_backbone_is_refused_listing_the_valid_names():
    with pytest.raises(ConfigError, match=r"^backbone='transformr': unknown; expected one of ") as e:
        madbench.Detector("transformr").fit(np.zeros((400, 3)))
    msg = one_line(e)
    assert re.findall(r"expected one of (.*)$", msg)[0].split(", ") == options("backbone")
    assert "anomaly_transformer" in msg and "lstm" in msg
    with pytest.raises(ConfigError, match=r"^trainer\.epochz: unknown key; expected one of .*epochs"):
        madbench.Detector(trainer={"epochz": 1}).get_config()
    with pytest.raises(ConfigError, match="^head='madclustr': unknown; expected one of .*madcluster"):
        madbench.Detector(head="madclustr").get_config()
    # a config the job refuses is refused by the API with the job's line
    with pytest.raises(ConfigError, match="^protocol=m2ad"):
        tiny(protocol="m2ad").get_config()     # scoring=raw, calibration none raises no alarm


# -- the README's example ------------------------------------------------------------------------
def readme_example() -> str:
    text = README.read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    code = readme_example()
    assert len(code.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    env: dict = {}
    exec(compile(code, "README.md (Python API)", "exec"), env)
    out = capsys.readouterr().out
    assert "strict" in out and "m2ad" in out
    assert env["alarms"].shape == (1500,) and env["s"].residuals.shape == (1500, 8)
    assert np.array_equal(madbench.Detector.load(tmp_path / "my_detector").score(env["sys0"].test).score,
                          env["s"].score, equal_nan=True)
