"""The trivial baselines (madbench/models/baselines.py): each one's defining behaviour on data
where the answer is known by hand, inside the model and inside real jobs."""
import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.decomposition import PCA

from madbench import run
from madbench.data.preprocess import Preprocessor
from madbench.errors import ConfigError
from madbench.models.baselines import (ConstantScore, InputDeviation, PCAReconstruction, Persistence, RandomScore,
                                       TrainMean, auto_components)
from tests.conftest import compose_cfg, stored


def job(tmp_path, backbone, *extra, protocols="[strict]"):
    cfg = compose_cfg([f"backbone={backbone}", "dataset.n_systems=1", f"protocol={protocols}", *extra])
    df = run.main(cfg, tmp_path)
    assert (df.status == "ok").all()
    (raw,) = run.load_entities(cfg)
    return cfg, df, stored(tmp_path)["sys0"], Preprocessor().apply(raw)


def training_steps(entity, cfg, horizon: int) -> np.ndarray:
    """The train rows the training windows read (the first 80% of the windows, in time), by
    hand: n windows of span window + horizon at stride 1, round(0.2 n) of them validation."""
    L = cfg.dataset.window
    n = len(entity.train) - (L + horizon) + 1
    n_train = n - int(round(n * cfg.trainer.val_ratio))
    return entity.train[: n_train - 1 + L]


# -- scores of their own ----------------------------------------------------------------------------
def test_random_is_one_seeded_uniform_draw_per_window_whatever_the_input():
    m = RandomScore(3, 2, 10, seed=7).eval()
    x = torch.randn(2000, 10, 3)
    a = m(x).extras["score"]
    assert a.shape == (2000, 10) and (a == a[:, :1]).all()          # one value per window, on its L steps
    assert stats.kstest(a[:, 0].numpy(), "uniform").pvalue > 0.01   # uniform on [0, 1)
    m.eval()                                                        # a new scoring pass draws the same sequence
    torch.testing.assert_close(m(torch.zeros_like(x)).extras["score"], a)  # ... whatever the input
    b = RandomScore(3, 2, 10, seed=8).eval()(x).extras["score"]
    assert not torch.allclose(a, b)


def test_constant_under_the_madcluster_protocol_is_the_all_positive_f1(tmp_path):
    cfg, df, z, entity = job(tmp_path, "constant", protocols="[madcluster,strict]")
    L, y = cfg.dataset.window, entity.labels
    # by hand: a window is positive when any of its L steps is; flagging every window gives
    # precision P (the positive share), recall 1, F1 2P / (1 + P)
    labels = [int(y[i:i + L].any()) for i in range(len(y) - L + 1)]
    share = sum(labels) / len(labels)
    assert 0 < share < 1
    row = df[(df.protocol == "madcluster") & (df.entity == "ALL")].iloc[0]
    assert row.f1 == pytest.approx(2 * share / (1 + share), abs=1e-12)
    assert row.precision == pytest.approx(share, abs=1e-12) and row.recall == 1.0
    # a threshold from validation scores flags nothing: every test score equals it
    strict = df[(df.protocol == "strict") & (df.entity == "sys0")].iloc[0]
    assert strict.recall == 0.0 and np.all(z.test.step == 1.0)


def test_constant_under_m2ad_and_tslib_flags_nothing_and_says_uncalibrated(tmp_path):
    _, df, _, _ = job(tmp_path, "constant", "scoring.calibration=pot", protocols="[m2ad,tslib]")
    m2ad = df[(df.protocol == "m2ad") & (df.entity == "sys0")].iloc[0]
    assert m2ad.calibration == "uncalibrated" and m2ad.n_detected == 0
    assert df[(df.protocol == "tslib") & (df.entity == "sys0")].iloc[0].recall == 0.0


def test_deviation_scores_the_mean_squared_distance_or_the_out_of_range_count():
    train = torch.tensor([[0.0, 1.0, 5.0], [2.0, 3.0, 5.0], [1.0, 2.0, 5.0]])
    x = torch.tensor([[[1.0, 2.0, 5.0], [3.0, 2.0, 4.0], [-1.0, 4.0, 6.0]]])      # [1, L=3, D=3]
    mean = InputDeviation(3, 1, 3, kind="mean")
    mean.fit(train)
    # train mean (1, 2, 5): squared deviations per step, averaged over the 3 columns
    torch.testing.assert_close(mean(x).extras["score"], torch.tensor([[0.0, (4 + 0 + 1) / 3, (4 + 4 + 1) / 3]]))
    rng = InputDeviation(3, 1, 3, kind="range")
    rng.fit(train)
    # train ranges [0, 2], [1, 3], [5, 5]: a value on the boundary is inside
    torch.testing.assert_close(rng(x).extras["score"], torch.tensor([[0.0, 2.0, 3.0]]))
    sensors = InputDeviation(3, 1, 3, kind="mean", columns="sensors")   # the first n_outputs = 1 column only
    sensors.fit(train)
    torch.testing.assert_close(sensors(x).extras["score"], torch.tensor([[0.0, 4.0, 4.0]]))
    with pytest.raises(ConfigError, match="^backbone.model.kind='max'"):
        InputDeviation(3, 1, 3, kind="max")


def test_deviation_is_fitted_on_the_training_windows_steps_each_once(tmp_path):
    cfg, _, z, entity = job(tmp_path, "deviation")
    rows = training_steps(entity, cfg, horizon=0)
    mu = rows.astype(np.float64).mean(0)
    # a reconstruction-like score: each step's value is the same in every window, so the placed
    # score is the step's own mean squared deviation
    np.testing.assert_allclose(z.test.step, ((entity.test - mu) ** 2).mean(1), rtol=1e-5)


# -- predictions ------------------------------------------------------------------------------------
def test_persistence_residuals_are_the_previous_step_difference(tmp_path):
    cfg, _, z, entity = job(tmp_path, "persistence")
    L, res = cfg.dataset.window, z.test.residuals
    s = entity.test[:, entity.sensor_idx]
    assert np.isnan(res[:L]).all()                      # a forecast's first target is step L
    np.testing.assert_allclose(res[L:], s[L:] - s[L - 1:-1], atol=1e-6)
    np.testing.assert_allclose(z.test.step[L:], ((s[L:] - s[L - 1:-1]) ** 2).mean(1), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("objective", ["forecast", "reconstruct"])
def test_train_mean_residuals_are_the_distance_from_the_train_mean(tmp_path, objective):
    cfg, df, z, entity = job(tmp_path, "train_mean", f"objective={objective}")
    horizon = 1 if objective == "forecast" else 0
    mu = training_steps(entity, cfg, horizon)[:, entity.sensor_idx].astype(np.float64).mean(0)
    first = cfg.dataset.window if horizon else 0
    res = z.test.residuals
    assert np.isnan(res[:first]).all()
    np.testing.assert_allclose(res[first:], entity.test[first:, entity.sensor_idx] - mu, atol=1e-5)
    assert (df[df.entity == "sys0"].epochs_run == 0).all()  # nothing trained by gradient descent


@pytest.mark.parametrize("backbone", ["persistence", "train_mean", "pca"])
def test_the_predictors_residuals_feed_m2ad(tmp_path, backbone):
    cfg, df, z, _ = job(tmp_path, backbone, "scoring=m2ad", protocols="[m2ad]")
    first = cfg.dataset.window if backbone != "pca" else 0
    assert z.sensor_p.shape[1] == len(z.sensors) and np.isfinite(z.p[first:]).all()
    assert df[df.entity == "sys0"].iloc[0].calibration == "ok"


def test_pca_reconstructs_the_sensors_from_the_train_steps_leading_components():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    test = rng.normal(size=(40, 6)) @ rng.normal(size=(6, 6))
    m = PCAReconstruction(6, 4, 40, n_components=3)
    m.fit(torch.tensor(train, dtype=torch.float32))
    ref = PCA(3).fit(train)
    expected = ref.inverse_transform(ref.transform(test))[:, :4]
    got = m(torch.tensor(test, dtype=torch.float32)[None]).reconstruction[0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # the quo vadis paper's rule for auto
    assert [auto_components(d) for d in (1, 5, 20, 50, 55)] == [1, 2, 10, 10, 30]
    with pytest.raises(ConfigError, match="^backbone.model.n_components=9 is more than the 6 input columns"):
        PCAReconstruction(6, 4, 40, n_components=9)


def test_baselines_statistics_survive_a_state_dict_round_trip():
    train = torch.rand(50, 4)
    x = torch.rand(3, 10, 4)
    for cls, out in ((TrainMean, "reconstruction"), (PCAReconstruction, "reconstruction"),
                     (InputDeviation, "score")):
        a = cls(4, 2, 10)
        a.fit(train)
        b = cls(4, 2, 10)
        b.load_state_dict(a.state_dict())
        pa, pb = getattr(a(x), out, None), getattr(b(x), out, None)
        pa, pb = (pa, pb) if pa is not None else (a(x).extras[out], b(x).extras[out])
        torch.testing.assert_close(pa, pb)
    assert Persistence(4, 2, 10)(x).forecast.shape == (3, 1, 2)
    assert ConstantScore(4, 2, 10)(x).extras["score"].shape == (3, 10)
