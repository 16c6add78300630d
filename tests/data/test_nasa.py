import json

import numpy as np
import pandas as pd
import pytest

from madbench.data.nasa import load_nasa, load_nasa_merged
from madbench.errors import DataError

from .conftest import N_TEST, N_TRAIN
from .helpers import raises_data_error, raises_disagreement


def test_msl_channels_columns_and_labels(nasa_root):
    es = load_nasa(nasa_root, "MSL")
    assert [e.name for e in es] == ["C-1", "M-6"]  # CSV order, MSL only
    c1 = es[0]
    assert c1.system == "MSL"
    assert c1.train.shape == (N_TRAIN, 55) and c1.test.shape == (N_TEST, 55)
    assert c1.columns == ["value"] + [f"cmd_{i}" for i in range(1, 55)]
    assert c1.sensors == ["value"] and c1.covariates == c1.columns[1:]
    raw = np.load(nasa_root / "test" / "C-1.npy")
    np.testing.assert_array_equal(c1.test, raw.astype(np.float32))
    # [5, 9] and [100, 149]: inclusive ends
    assert c1.labels[4] == 0 and c1.labels[5:10].all() and c1.labels[10] == 0
    assert c1.labels[100:150].all() and c1.labels.sum() == 5 + 50
    assert c1.meta["events"] == [
        {"start": 5, "end": 9, "kind": "point", "sensors": None},
        {"start": 100, "end": 149, "kind": "contextual", "sensors": None},
    ]
    assert c1.meta["source"]["train"].endswith("train/C-1.npy")
    assert es[1].labels[0] == 1 and es[1].labels.sum() == 1  # a one-point event at row 0


def test_sensors_all_models_every_column(nasa_root):
    (e,) = load_nasa(nasa_root, "SMAP", entities=["A-1"], sensors="all")
    assert e.sensors == e.columns and e.covariates == [] and len(e.columns) == 25


def test_smap_all_drops_duplicated_p2(nasa_root):
    es = load_nasa(nasa_root, "smap")
    assert [e.name for e in es] == ["A-1"]


def test_p2_by_name_merges_its_rows_and_warns(nasa_root):
    with pytest.warns(UserWarning, match="P-2"):
        (e,) = load_nasa(nasa_root, "SMAP", entities=["P-2"])
    # rows [[10, 20]] and [[15, 30]] -> one event 10..30
    assert e.meta["events"] == [{"start": 10, "end": 30, "kind": "point+contextual", "sensors": None}]
    assert e.labels.sum() == 21


def test_entity_list_keeps_order(nasa_root):
    assert [e.name for e in load_nasa(nasa_root, "MSL", entities=["M-6", "C-1"])] == ["M-6", "C-1"]


def test_unknown_entity(nasa_root):
    raises_data_error(
        load_nasa, nasa_root, "MSL", entities=["A-1"], file="labeled_anomalies.csv", expect="one of C-1, M-6"
    )


def test_bad_spacecraft_and_sensors(nasa_root):
    with pytest.raises(DataError, match="expected one of"):
        load_nasa(nasa_root, "MARS")
    with pytest.raises(DataError, match="sensors='some'"):
        load_nasa(nasa_root, "MSL", sensors="some")


def test_missing_csv(tmp_path):
    raises_data_error(load_nasa, tmp_path, file="labeled_anomalies.csv", expect="telemanom")


def test_missing_npy(nasa_root):
    (nasa_root / "test" / "M-6.npy").unlink()
    raises_data_error(load_nasa, nasa_root, "MSL", file="test/M-6.npy", expect="MSL channel M-6")


def test_corrupt_npy(nasa_root):
    (nasa_root / "train" / "C-1.npy").write_bytes(b"not a numpy file")
    raises_data_error(load_nasa, nasa_root, "MSL", file="train/C-1.npy", expect="MSL channel C-1")


def test_wrong_dims(nasa_root):
    np.save(nasa_root / "train" / "C-1.npy", np.zeros((N_TRAIN, 25)))
    raises_data_error(load_nasa, nasa_root, "MSL", file="train/C-1.npy", expect="expected 55")


def test_spacecraft_disagrees_with_the_column_count(nasa_root):
    """The CSV says C-1 is an MSL channel (55 columns); its test file has SMAP's 25."""
    np.save(nasa_root / "test" / "C-1.npy", np.zeros((N_TEST, 25)))
    msg = raises_disagreement(
        load_nasa,
        nasa_root,
        "MSL",
        files=(str(nasa_root / "test" / "C-1.npy"), str(nasa_root / "labeled_anomalies.csv")),
        values=("25 columns", "spacecraft MSL", "55"),
    )
    assert "C-1" in msg


def _set_csv(nasa_root, chan, column, value, row=None):
    path = nasa_root / "labeled_anomalies.csv"
    df = pd.read_csv(path)
    where = df.index[df.chan_id == chan]
    df[column] = df[column].astype(object)
    df.loc[where if row is None else where[row], column] = value
    df.to_csv(path, index=False)


@pytest.mark.parametrize(
    "chan, rows, num_values",
    [
        ("M-6", N_TEST - 10, N_TEST),  # issue 10: cut short, every event still inside; it used to train
        ("C-1", N_TEST - 1, N_TEST),  # cut through C-1's last event: blame the file, not the sequence
        ("C-1", N_TEST, N_TEST + 5),  # the CSV edited instead
    ],
)
def test_test_rows_disagree_with_num_values(nasa_root, chan, rows, num_values):
    if rows != N_TEST:
        np.save(nasa_root / "test" / f"{chan}.npy", np.load(nasa_root / "test" / f"{chan}.npy")[:rows])
    if num_values != N_TEST:
        _set_csv(nasa_root, chan, "num_values", num_values)
    msg = raises_disagreement(
        load_nasa,
        nasa_root,
        "MSL",
        files=(str(nasa_root / "test" / f"{chan}.npy"), str(nasa_root / "labeled_anomalies.csv")),
        values=(f"{rows} rows", f"num_values {num_values}"),
    )
    assert msg.startswith(f"{nasa_root / 'test' / chan}.npy: {rows} rows, but") and f"for {chan};" in msg


def test_every_row_of_a_duplicated_channel_is_checked(nasa_root):
    _set_csv(nasa_root, "P-2", "num_values", 999, row=1)  # the second of P-2's two rows
    with pytest.warns(UserWarning, match="P-2"):
        raises_disagreement(
            load_nasa,
            nasa_root,
            "SMAP",
            entities=["P-2"],
            files=("test/P-2.npy", "labeled_anomalies.csv"),
            values=(f"{N_TEST} rows", "num_values 999"),
        )


def test_num_values_missing_or_not_a_count(nasa_root):
    _set_csv(nasa_root, "C-1", "num_values", "many")
    raises_data_error(load_nasa, nasa_root, "MSL", file="labeled_anomalies.csv", expect="'many'")
    _set_csv(nasa_root, "C-1", "num_values", "")
    raises_data_error(load_nasa, nasa_root, "MSL", file="labeled_anomalies.csv", expect="number of test rows")
    df = pd.read_csv(nasa_root / "labeled_anomalies.csv").drop(columns=["num_values"])
    df.to_csv(nasa_root / "labeled_anomalies.csv", index=False)
    raises_data_error(load_nasa, nasa_root, "MSL", file="labeled_anomalies.csv", expect="'num_values'")


def test_sequence_past_test_end(nasa_root):
    df = pd.read_csv(nasa_root / "labeled_anomalies.csv")
    df.loc[df.chan_id == "M-6", "anomaly_sequences"] = json.dumps([[140, N_TEST]])
    df.to_csv(nasa_root / "labeled_anomalies.csv", index=False)
    raises_disagreement(
        load_nasa,
        nasa_root,
        "MSL",
        files=("labeled_anomalies.csv", "test/M-6.npy"),
        values=(f"[140, {N_TEST}]", f"end < {N_TEST}"),
    )


def test_malformed_sequences_and_classes(nasa_root):
    df = pd.read_csv(nasa_root / "labeled_anomalies.csv")
    df.loc[df.chan_id == "M-6", "anomaly_sequences"] = "[[1, 2"
    df.to_csv(nasa_root / "labeled_anomalies.csv", index=False)
    raises_data_error(load_nasa, nasa_root, "MSL", file="labeled_anomalies.csv", expect="[[start, end]")
    df.loc[df.chan_id == "M-6", "anomaly_sequences"] = "[[1, 2]]"
    df.loc[df.chan_id == "M-6", "class"] = "[point, point]"
    df.to_csv(nasa_root / "labeled_anomalies.csv", index=False)
    raises_data_error(load_nasa, nasa_root, "MSL", file="labeled_anomalies.csv", expect="one each")


def test_nan_in_test_is_an_error_but_train_nan_is_kept(nasa_root):
    x = np.load(nasa_root / "train" / "C-1.npy")
    x[3, 0] = np.nan
    np.save(nasa_root / "train" / "C-1.npy", x)
    (e, _) = load_nasa(nasa_root, "MSL")
    assert np.isnan(e.train[3, 0])  # raw: imputation is the runner's job
    x = np.load(nasa_root / "test" / "C-1.npy")
    x[7, 2] = np.inf
    np.save(nasa_root / "test" / "C-1.npy", x)
    msg = raises_data_error(load_nasa, nasa_root, "MSL", file="test/C-1.npy", expect="finite test values")
    assert "row 7, column 2" in msg


def test_min_length(nasa_root):
    raises_data_error(
        load_nasa, nasa_root, "MSL", min_length=N_TRAIN + 1, file="train/C-1.npy", expect=f"at least {N_TRAIN + 1}"
    )
    assert len(load_nasa(nasa_root, "MSL", min_length=N_TRAIN)) == 2


def test_merged(msl_merged_root):
    (e,) = load_nasa_merged(msl_merged_root, "MSL")
    assert (e.name, e.system) == ("MSL", "MSL")
    assert e.train.shape == (N_TRAIN, 55) and e.sensors == e.columns and e.covariates == []
    assert e.labels.dtype == np.int8 and e.labels.sum() == 10
    assert e.meta["events"] == [{"start": 10, "end": 19, "kind": "anomaly", "sensors": None}]


def test_merged_label_length(msl_merged_root):
    np.save(msl_merged_root / "MSL_test_label.npy", np.zeros(N_TEST - 1))
    raises_disagreement(
        load_nasa_merged,
        msl_merged_root,
        "MSL",
        files=(str(msl_merged_root / "MSL_test_label.npy"), str(msl_merged_root / "MSL_test.npy")),
        values=(f"{N_TEST - 1} labels", f"{N_TEST} rows"),
    )


def test_merged_train_and_test_columns_disagree(msl_merged_root):
    np.save(msl_merged_root / "MSL_test.npy", np.zeros((N_TEST, 25)))
    raises_disagreement(
        load_nasa_merged, msl_merged_root, "MSL", files=("MSL_test.npy",), values=("25 columns", "expected 55")
    )


def test_merged_wrong_dims_and_missing(msl_merged_root, tmp_path):
    np.save(msl_merged_root / "MSL_test.npy", np.zeros((N_TEST, 54)))
    raises_data_error(load_nasa_merged, msl_merged_root, "MSL", file="MSL_test.npy", expect="expected 55")
    raises_data_error(load_nasa_merged, tmp_path, "SMAP", file="SMAP_train.npy", expect="merged SMAP")


def test_merged_labels_must_be_binary(msl_merged_root):
    y = np.zeros(N_TEST)
    y[3] = 2
    np.save(msl_merged_root / "MSL_test_label.npy", y)
    raises_data_error(load_nasa_merged, msl_merged_root, "MSL", file="MSL_test_label.npy", expect="only 0 and 1")
