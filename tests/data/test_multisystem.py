import numpy as np
import pandas as pd
import pytest

from madbench.data.entity import Entity
from madbench.data.multisystem import load_multisystem, write_multisystem

from .conftest import N_TEST, N_TRAIN
from .helpers import raises_data_error, raises_disagreement


def test_load_handwritten_layout(multisystem_root):
    fan, pump = load_multisystem(multisystem_root)  # natural order of folder names
    assert (fan.name, pump.name) == ("fan_2", "pump-1")
    assert pump.system == "plant" and fan.system == "multisystem"  # default: the root folder's name
    assert pump.columns == ["p1", "p2", "t1", "cmd"]
    assert pump.sensors == ["p1", "p2", "t1"] and pump.covariates == ["cmd"]
    assert fan.sensors == ["rpm", "temp"] and fan.covariates == []
    assert pump.meta["groups"] == {
        "pressure": {"weight": 2.0, "sensors": ["p1", "p2"]},
        "temperature": {"weight": 1.0, "sensors": ["t1"]},
    }
    assert "groups" not in fan.meta
    assert pump.timestamps[0] == 2200 and pump.train.shape == (N_TRAIN, 4) and pump.test.shape == (N_TEST, 4)
    # labels by test timestamp, inclusive: 2250..2290 -> rows 5..9, 2295..2301 -> row 10
    assert np.flatnonzero(pump.labels).tolist() == [5, 6, 7, 8, 9, 10]
    assert pump.meta["events"] == [
        {"start": 5, "end": 9, "kind": "spike", "sensors": ["p1", "t1"]},
        {"start": 10, "end": 10, "kind": "anomaly", "sensors": None},
    ]
    assert fan.labels[0] == 1 and fan.labels.sum() == 1
    assert np.isnan(fan.train[5, 0])  # train NaN kept raw


def test_entities_and_min_length(multisystem_root):
    (e,) = load_multisystem(multisystem_root, entities=["pump-1"], min_length=N_TRAIN)
    assert e.name == "pump-1"
    raises_data_error(load_multisystem, multisystem_root, entities=["nope"], file="systems", expect="fan_2")
    raises_data_error(
        load_multisystem, multisystem_root, min_length=N_TEST, file="train.csv", expect=f"at least {N_TEST}"
    )


def _fake_entities():
    rng = np.random.default_rng(1)
    a = Entity(
        name="sys0",
        system="fake",
        train=rng.normal(size=(30, 3)),
        test=rng.normal(size=(20, 3)),
        labels=np.r_[np.zeros(5), np.ones(3), np.zeros(10), np.ones(2)],
        columns=["s0", "s1", "c0"],
        sensors=["s0", "s1"],
        covariates=["c0"],
        timestamps=1000 + 5 * np.arange(20),
        meta={
            "events": [
                {"start": 5, "end": 7, "kind": "spike", "sensors": ["s1"]},
                {"start": 18, "end": 19, "kind": "drift", "sensors": ["s0", "s1"]},
            ],
            "groups": {"g": {"weight": 3.0, "sensors": ["s0", "s1"]}},
        },
    )
    train_b = rng.normal(size=(25, 1)).astype(np.float32) * 1e4
    train_b[3, 0] = np.nan
    b = Entity(
        name="sys1",
        system="fake",
        train=train_b,
        test=rng.normal(size=(20, 1)) * 1e-3,
        labels=np.zeros(20),
        columns=["only"],
        sensors=["only"],
    )
    return [a, b]


def test_round_trip(tmp_path):
    ents = _fake_entities()
    write_multisystem(ents, tmp_path / "ms")
    back = load_multisystem(tmp_path / "ms")
    assert [e.name for e in back] == ["sys0", "sys1"]
    for e, f in zip(ents, back):
        np.testing.assert_array_equal(e.train, f.train)  # float32 exact, NaN included
        np.testing.assert_array_equal(e.test, f.test)
        np.testing.assert_array_equal(e.labels, f.labels)
        np.testing.assert_array_equal(e.timestamps, f.timestamps)
        assert (e.system, e.columns, e.sensors, e.covariates) == (f.system, f.columns, f.sensors, f.covariates)
        assert e.meta.get("groups") == f.meta.get("groups")
    assert back[0].meta["events"] == ents[0].meta["events"]


def test_round_trip_synthetic(tmp_path):
    synthetic = pytest.importorskip("madbench.data.synthetic")
    ents = synthetic.load(n_systems=2, n_sensors=3, n_covariates=2, train_len=300, test_len=300, seed=3)
    write_multisystem(ents, tmp_path / "ms")
    back = load_multisystem(tmp_path / "ms")
    for e, f in zip(ents, back):
        np.testing.assert_array_equal(e.train, f.train)
        np.testing.assert_array_equal(e.test, f.test)
        np.testing.assert_array_equal(e.labels, f.labels)
        assert (e.name, e.sensors, e.covariates) == (f.name, f.sensors, f.covariates)
        assert e.meta.get("groups") == f.meta.get("groups")


def test_write_refuses_bad_names(tmp_path):
    e = _fake_entities()[1]
    e.name = "../escape"
    raises_data_error(write_multisystem, [e], tmp_path, file=str(tmp_path), expect="letters, digits")


def test_meta_names_unknown_column(multisystem_root):
    p = multisystem_root / "meta.yaml"
    p.write_text(p.read_text().replace("sensors: [p1, p2, t1]", "sensors: [p1, p9]"))
    raises_data_error(load_multisystem, multisystem_root, file="meta.yaml", expect="columns of systems/pump-1")


@pytest.mark.parametrize(
    "old, new, files, values",
    [
        ("covariates: [cmd]", "covariates: [valve]", ("systems/pump-1/train.csv",),
         ("covariates names 'valve'", "['p1', 'p2', 't1', 'cmd']")),
        ("systems:\n", "systems:\n  pump-9:\n    sensors: [p1]\n", ("systems",),
         ("systems.pump-9", "['fan_2', 'pump-1']")),
    ],
)
def test_meta_disagrees_with_the_files(multisystem_root, old, new, files, values):
    p = multisystem_root / "meta.yaml"
    assert old in p.read_text()
    p.write_text(p.read_text().replace(old, new))
    raises_disagreement(load_multisystem, multisystem_root, files=(str(p), *files), values=values)


def test_meta_group_sensor_not_a_sensor(multisystem_root):
    p = multisystem_root / "meta.yaml"
    p.write_text(p.read_text().replace("sensors: [t1]}", "sensors: [cmd]}"))
    raises_data_error(load_multisystem, multisystem_root, file="meta.yaml", expect="sensors of pump-1")


def test_meta_bad_weight_and_yaml(multisystem_root):
    p = multisystem_root / "meta.yaml"
    text = p.read_text()
    p.write_text(text.replace("weight: 2.0", "weight: -1"))
    raises_data_error(load_multisystem, multisystem_root, file="meta.yaml", expect="positive number")
    p.write_text("systems: [unclosed\n")
    raises_data_error(load_multisystem, multisystem_root, file="meta.yaml", expect="systems:")


def test_labels_unknown_system_and_uncovered_event(multisystem_root):
    p = multisystem_root / "labels.csv"
    p.write_text("system,start,end\nghost,0,1\n")
    raises_data_error(load_multisystem, multisystem_root, file="labels.csv", expect="one of")
    p.write_text("system,start,end\nfan_2,5,7\n")  # before the first test timestamp (1200)
    raises_data_error(load_multisystem, multisystem_root, file="labels.csv", expect="within 1200..")
    p.write_text("system,start,end\nfan_2,1300,1200\n")
    raises_data_error(load_multisystem, multisystem_root, file="labels.csv", expect="start <= end")


@pytest.mark.parametrize(
    "row, bound",
    [
        ("fan_2,1100,1250", "1200"),  # starts before the first test timestamp (inside train time)
        ("pump-1,3600,99999", "3690"),  # ends after the last test timestamp
    ],
)
def test_labels_range_partly_outside_the_test_timestamps(multisystem_root, row, bound):
    """Used to be clipped silently to the rows it does cover."""
    p = multisystem_root / "labels.csv"
    p.write_text("system,start,end\n" + row + "\n")
    system, start, end = row.split(",")
    msg = raises_disagreement(
        load_multisystem,
        multisystem_root,
        files=(str(p), f"systems/{system}/test.csv"),
        values=(f"{start}..{end}", bound),
    )
    assert "row 0" in msg


def test_labels_sensor_not_a_column(multisystem_root):
    p = multisystem_root / "labels.csv"
    p.write_text("system,start,end,kind,sensors\npump-1,2250,2290,spike,p1;p7\n")
    raises_disagreement(
        load_multisystem,
        multisystem_root,
        files=(str(p), "systems/pump-1/train.csv"),
        values=("'p7'", "['p1', 'p2', 't1', 'cmd']"),
    )


def test_labels_missing_or_without_columns(multisystem_root):
    p = multisystem_root / "labels.csv"
    p.write_text("system,begin,end\n")
    raises_data_error(load_multisystem, multisystem_root, file="labels.csv", expect="system,start,end")
    p.write_text("system,start,end\n")  # header only: no anomalies is fine
    assert sum(e.labels.sum() for e in load_multisystem(multisystem_root)) == 0
    p.unlink()
    raises_data_error(load_multisystem, multisystem_root, file="labels.csv", expect="header-only")


def test_timestamps_must_increase_in_test(multisystem_root):
    p = multisystem_root / "systems" / "fan_2" / "test.csv"
    df = pd.read_csv(p)
    df.loc[4, "timestamp"] = df.loc[3, "timestamp"]
    df.to_csv(p, index=False)
    raises_data_error(load_multisystem, multisystem_root, file="fan_2/test.csv", expect="strictly increasing")


def test_columns_must_match_and_test_finite(multisystem_root):
    p = multisystem_root / "systems" / "fan_2" / "test.csv"
    df = pd.read_csv(p)
    df.loc[2, "temp"] = np.nan
    df.to_csv(p, index=False)
    raises_data_error(load_multisystem, multisystem_root, file="fan_2/test.csv", expect="finite test values")
    df.drop(columns=["temp"]).to_csv(p, index=False)
    raises_data_error(load_multisystem, multisystem_root, file="fan_2/test.csv", expect="columns of train.csv")


def test_missing_pieces(tmp_path, multisystem_root):
    raises_data_error(load_multisystem, tmp_path / "nothing", file="systems", expect="systems/<name>")
    (multisystem_root / "systems" / "fan_2" / "train.csv").unlink()
    raises_data_error(load_multisystem, multisystem_root, file="fan_2/train.csv", expect="timestamp")
    (multisystem_root / "systems" / "fan_2" / "train.csv").write_text("timestamp,rpm\n0,abc\n")
    raises_data_error(load_multisystem, multisystem_root, file="fan_2/train.csv", expect="numeric")


def test_no_meta_means_all_sensors(multisystem_root):
    (multisystem_root / "meta.yaml").unlink()
    pump = load_multisystem(multisystem_root, entities=["pump-1"])[0]
    assert pump.sensors == pump.columns and pump.covariates == []
