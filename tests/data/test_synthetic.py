"""The synthetic generator: contract, reproducibility, structure, events and detectability."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra.utils import instantiate
from numpy.lib.stride_tricks import sliding_window_view
from omegaconf import OmegaConf
from sklearn.linear_model import Ridge
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import MinMaxScaler

from madbench.data.entity import Entity, label_events
from madbench.data.synthetic import KINDS, load
from madbench.errors import ConfigError

CONFIG = Path(__file__).parents[2] / "configs" / "dataset" / "synthetic.yaml"


@pytest.fixture(scope="module")
def default():
    return load()


@pytest.fixture(scope="module")
def clean():
    """The default dataset without anomalies: the same normal series (events are drawn last)."""
    return load(anomaly_ratio=0.0)


def _normalised(e, x):
    g = e.meta["generator"]
    return (x[:, e.sensor_idx] - np.array(g["offset"])) / np.array(g["scale"]) / np.array(g["sigma"])


# ---------------------------------------------------------------- contract
def test_default_shapes_names_dtypes(default):
    assert [e.name for e in default] == ["sys0", "sys1", "sys2", "sys3"]
    for e in default:
        assert isinstance(e, Entity) and e.system == e.name
        assert e.train.shape == (3000, 12) and e.test.shape == (3000, 12)
        assert e.train.dtype == e.test.dtype == np.float32
        assert e.labels.dtype == np.int8 and e.labels.shape == (3000,)
        assert e.timestamps.dtype == np.int64 and len(e.timestamps) == 3000
        assert e.sensors == [f"s{i}" for i in range(8)] and e.covariates == [f"c{j}" for j in range(4)]
        assert e.columns == e.sensors + e.covariates
        assert np.isfinite(e.train).all() and np.isfinite(e.test).all()
        cov = np.concatenate([e.train, e.test])[:, e.covariate_idx]
        assert set(np.unique(cov)) <= {0.0, 1.0}
        groups = e.meta["groups"]
        assert sorted(s for g in groups.values() for s in g["sensors"]) == sorted(e.sensors)
        assert all(g["weight"] == 1.0 and g["sensors"] for g in groups.values())
        assert {"seasonal_periods", "loadings", "noise_std", "scale", "offset"} <= set(e.meta["generator"])


@pytest.mark.parametrize("n_sys,n_s,n_c,tr,te", [(2, 3, 1, 400, 400), (1, 1, 0, 200, 300), (3, 5, 2, 500, 1000)])
def test_sizes_from_arguments(n_sys, n_s, n_c, tr, te):
    ents = load(n_systems=n_sys, n_sensors=n_s, n_covariates=n_c, train_len=tr, test_len=te, seed=1)
    assert len(ents) == n_sys
    for e in ents:
        assert e.train.shape == (tr, n_s + n_c) and e.test.shape == (te, n_s + n_c)
        assert e.n_sensors == n_s and len(e.covariates) == n_c
        assert label_events(e.labels) == [(v["start"], v["end"]) for v in e.meta["events"]]


def test_entities_filter_keeps_the_asked_order_and_refuses_unknown_names(default):
    ents = load(entities=["sys2", "sys0"])
    assert [e.name for e in ents] == ["sys2", "sys0"]
    np.testing.assert_array_equal(ents[0].test, default[2].test)
    with pytest.raises(ConfigError, match="sys9"):
        load(entities=["sys9"])


@pytest.mark.parametrize(
    "bad", [dict(anomaly_ratio=5.0), dict(anomaly_ratio=-0.1), dict(n_sensors=0), dict(train_len=2.5), dict(seed=-1)]
)
def test_bad_arguments_are_refused(bad):
    with pytest.raises(ConfigError):
        load(n_systems=1, **bad)


# ---------------------------------------------------------------- determinism
def test_reproducible_per_seed_and_seeds_differ(default):
    again = load(seed=0)
    for e, f in zip(default, again):
        np.testing.assert_array_equal(e.train, f.train)
        np.testing.assert_array_equal(e.test, f.test)
        np.testing.assert_array_equal(e.labels, f.labels)
        assert e.meta["events"] == f.meta["events"]
    other = load(seed=1)
    for e, f in zip(default, other):
        assert not np.allclose(e.train, f.train)
        assert e.meta["events"] != f.meta["events"]


def test_a_system_does_not_depend_on_how_many_are_asked_for(default):
    (e,) = load(n_systems=2, entities=["sys1"])
    np.testing.assert_array_equal(e.train, default[1].train)
    np.testing.assert_array_equal(e.test, default[1].test)


# ---------------------------------------------------------------- events and labels
def test_labels_are_exactly_the_event_spans(default):
    for e in default:
        events = e.meta["events"]
        assert label_events(e.labels) == [(v["start"], v["end"]) for v in events]
        assert int(e.labels.sum()) == sum(v["end"] - v["start"] + 1 for v in events)
        for a, b in zip(events, events[1:]):
            assert b["start"] - a["end"] - 1 >= 100  # normal gaps, at least a window long
        assert events[0]["start"] >= 150  # nothing in the first window + warm-up
        for v in events:
            assert set(v) == {"start", "end", "kind", "sensors"} and v["kind"] in KINDS
            assert v["sensors"] and set(v["sensors"]) <= set(e.sensors)


def test_every_kind_appears_in_every_system(default):
    for e in default:
        assert {v["kind"] for v in e.meta["events"]} == set(KINDS)


def test_small_budgets_rotate_the_kinds_over_systems():
    ents = load(n_systems=6, train_len=300, test_len=600, anomaly_ratio=0.05)  # 30 points: 1 event each
    assert {v["kind"] for e in ents for v in e.meta["events"]} == set(KINDS)


@pytest.mark.parametrize("ratio", [0.0, 0.01, 0.05, 0.1, 0.2])
def test_realised_ratio_is_near_the_target(ratio):
    ents = load(n_systems=2, train_len=300, anomaly_ratio=ratio)
    realised = np.mean([e.labels.mean() for e in ents])
    assert abs(realised - ratio) <= 0.015


@pytest.mark.parametrize("test_len,ratio", [(200, 0.01), (300, 0.05), (450, 0.1), (1000, 0.3), (5000, 0.02)])
def test_events_fit_short_and_long_series(test_len, ratio):
    for e in load(n_systems=3, n_sensors=4, n_covariates=1, train_len=200, test_len=test_len, anomaly_ratio=ratio):
        events = e.meta["events"]
        assert abs(e.labels.mean() - ratio) <= 1.0 / test_len
        assert label_events(e.labels) == [(v["start"], v["end"]) for v in events]
        assert all(b["start"] > a["end"] + 1 for a, b in zip(events, events[1:]))
        assert not events or events[0]["start"] >= min(150, test_len // 3)


def test_train_is_normal_and_test_only_changes_on_events(default, clean):
    for e, c in zip(default, clean):
        np.testing.assert_array_equal(e.train, c.train)
        assert c.labels.sum() == 0 and c.meta["events"] == []
        changed = np.abs(e.test - c.test) > 1e-6 * (1 + np.abs(c.test))
        touched = np.zeros_like(changed)
        for v in e.meta["events"]:
            touched[v["start"] : v["end"] + 1, [e.columns.index(s) for s in v["sensors"]]] = True
        assert not (changed & ~touched).any()  # nothing outside the events moves
        for v in e.meta["events"]:
            span = changed[v["start"] : v["end"] + 1]
            assert span.any(), v  # every event changes something


def test_event_magnitudes(default, clean):
    for e, c in zip(default, clean):
        d = _normalised(e, e.test) - _normalised(c, c.test)
        for v in e.meta["events"]:
            cols = [int(s[1:]) for s in v["sensors"]]
            seg = d[v["start"] : v["end"] + 1, cols]
            if v["kind"] == "spike":
                assert np.all((np.abs(seg) >= 3 - 1e-3) & (np.abs(seg) <= 6 + 1e-3))
            elif v["kind"] == "level_shift":
                assert np.allclose(seg, seg[0], atol=1e-3)
                assert np.all((np.abs(seg[0]) >= 1.5 - 1e-3) & (np.abs(seg[0]) <= 3 + 1e-3))
            elif v["kind"] == "drift":
                assert np.all(np.abs(seg[0]) < np.abs(seg[-1]))
                assert np.all((np.abs(seg[-1]) >= 2.5 - 1e-3) & (np.abs(seg[-1]) <= 3.5 + 1e-3))
            elif v["kind"] == "stuck":
                raw = e.test[v["start"] : v["end"] + 1, cols]
                assert np.all(raw == e.test[v["start"] - 1, cols])


# ---------------------------------------------------------------- structure of the normal series
def test_systems_differ(default):
    g = [e.meta["generator"] for e in default]
    periods = np.array([x["seasonal_periods"] for x in g])
    assert len(np.unique(np.round(periods[:, 0], 3))) == len(default)
    noise = np.array([np.mean(x["noise_std"]) for x in g])
    assert noise.max() / noise.min() > 1.1
    stds = np.array([e.train[:, e.sensor_idx].std(0) for e in default])
    assert np.ptp(np.log10(stds)) > 1.0  # scales span more than a decade
    assert not np.allclose(stds[0], stds[1], rtol=0.1)


def test_sensors_are_correlated_within_a_system(default):
    rng = np.random.default_rng(0)
    noise = np.abs(np.corrcoef(rng.normal(size=(3000, 8)).T)[~np.eye(8, dtype=bool)]).mean()
    for e in default:
        c = np.abs(np.corrcoef(e.train[:, e.sensor_idx].T)[~np.eye(8, dtype=bool)])
        assert c.mean() > 0.2 > 5 * noise
        within = []  # sensors grouped by their dominant factor are the most correlated
        for grp in e.meta["groups"].values():
            idx = [e.columns.index(s) for s in grp["sensors"]]
            cg = np.abs(np.corrcoef(e.train[:, idx].T))
            within += list(cg[np.triu_indices(len(idx), 1)])
        assert np.mean(within) > max(0.4, c.mean())


def test_covariates_cause_level_changes_in_train(default):
    for e in default:
        x, cov = e.train[:, e.sensor_idx], e.train[:, e.covariate_idx]
        assert np.all(cov.min(0) == 0) and np.all(cov.max(0) == 1)  # every command switches in train
        design = np.column_stack([np.ones(len(cov)), cov])
        coef = np.linalg.lstsq(design, x, rcond=None)[0][1:] / x.std(0)  # [C, S], in sensor stds
        assert np.all(np.abs(coef).max(1) > 0.4)  # each covariate moves some sensor's level
        gains = np.array(e.meta["generator"]["covariate_gain"]).T  # [C, S]
        assert np.abs(coef[gains != 0]).mean() > 3 * np.abs(coef[gains == 0]).mean()


# ---------------------------------------------------------------- detectability (linear proxy of the LSTM)
def _ridge_forecast_error(e, window=100):
    scaler = MinMaxScaler().fit(e.train)
    tr, te = scaler.transform(e.train), scaler.transform(e.test)

    def lagged(a):
        x = sliding_window_view(a[:-1, e.input_idx], window, axis=0).reshape(len(a) - window, -1)
        return x, a[window:, e.sensor_idx]

    model = Ridge(alpha=1.0).fit(*lagged(tr))
    x, y = lagged(te)
    return ((model.predict(x) - y) ** 2).mean(1), e.labels[window:]


def test_anomalies_are_detectable_but_not_trivial(default, clean):
    aucs, control = [], []
    for e, c in zip(default[:2], clean[:2]):
        score, y = _ridge_forecast_error(e)
        aucs.append(roc_auc_score(y, score))
        # the same series without its events, scored against the same labels: what makes the
        # events detectable is the events, not where they were placed in the normal signal
        clean_score, _ = _ridge_forecast_error(c)
        control.append(roc_auc_score(y, clean_score))
    assert 0.75 <= np.mean(aucs) < 0.99
    assert abs(np.mean(control) - 0.5) < 0.06


# ---------------------------------------------------------------- config
def test_config_shape_and_instantiation():
    ds = yaml.safe_load(CONFIG.read_text())
    for key in ("window", "stride", "pooled", "entities", "anomaly_ratio", "scaler", "loader"):
        assert key in ds
    assert ds["name"] == "synthetic"
    assert ds["loader"]["_target_"] == "madbench.data.synthetic.load" and ds["loader"]["_convert_"] == "all"
    ds.update(n_systems=2, train_len=300, test_len=400, entities=["sys1"])
    cfg = OmegaConf.create({"seed": 3, "dataset": ds})
    (e,) = instantiate(cfg.dataset.loader)
    (f,) = load(n_systems=2, train_len=300, test_len=400, seed=3, entities=["sys1"])
    assert e.name == "sys1" and e.train.shape[1] == ds["n_sensors"] + ds["n_covariates"]
    np.testing.assert_array_equal(e.test, f.test)
