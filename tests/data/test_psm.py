import numpy as np
import pandas as pd

from madbench.data.psm import load_psm

from .conftest import N_TEST, N_TRAIN, PSM_NAN
from .helpers import raises_data_error, raises_disagreement


def test_load_psm(psm_root):
    (e,) = load_psm(psm_root)
    assert (e.name, e.system) == ("PSM", "PSM")
    assert e.train.shape == (N_TRAIN, 25) and e.test.shape == (N_TEST, 25)
    assert e.columns == [f"feature_{i}" for i in range(25)] and e.sensors == e.columns
    np.testing.assert_array_equal(e.timestamps, np.arange(N_TRAIN, N_TRAIN + N_TEST))
    assert e.labels.sum() == 11 + 10 and [(v["start"], v["end"]) for v in e.meta["events"]] == [(20, 30), (140, 149)]


def test_train_nans_imputed_with_train_means(psm_root):
    raw = pd.read_csv(psm_root / "train.csv").drop(columns=["timestamp_(min)"]).to_numpy()
    test_raw = pd.read_csv(psm_root / "test.csv").drop(columns=["timestamp_(min)"]).to_numpy()
    (e,) = load_psm(psm_root)
    assert np.isfinite(e.train).all() and e.meta["imputed"] == len(PSM_NAN)
    for r, c in PSM_NAN:
        assert e.train[r, c] == np.float32(np.nanmean(raw[:, c]))  # train statistics only
    np.testing.assert_allclose(e.test, test_raw, rtol=1e-6)  # test untouched


def test_test_nan_is_an_error(psm_root):
    df = pd.read_csv(psm_root / "test.csv")
    df.loc[4, "feature_3"] = np.nan
    df.to_csv(psm_root / "test.csv", index=False)
    raises_data_error(load_psm, psm_root, file="test.csv", expect="finite test values")


def test_label_length(psm_root):
    df = pd.read_csv(psm_root / "test_label.csv")
    df.iloc[:-2].to_csv(psm_root / "test_label.csv", index=False)
    raises_disagreement(
        load_psm,
        psm_root,
        files=(str(psm_root / "test_label.csv"), str(psm_root / "test.csv")),
        values=(f"{N_TEST - 2} labels", f"{N_TEST} rows"),
    )


def test_label_timestamps_must_match(psm_root):
    df = pd.read_csv(psm_root / "test_label.csv")
    df.loc[7, "timestamp_(min)"] += 1000
    df.to_csv(psm_root / "test_label.csv", index=False)
    t = N_TRAIN + 7
    msg = raises_disagreement(
        load_psm,
        psm_root,
        files=(str(psm_root / "test_label.csv"), str(psm_root / "test.csv")),
        values=(f"timestamp_(min) {t + 1000}", f"{t}"),
    )
    assert "row 7" in msg


def test_test_columns_disagree_with_train(psm_root):
    df = pd.read_csv(psm_root / "test.csv").rename(columns={"feature_3": "feature_x"})
    df.to_csv(psm_root / "test.csv", index=False)
    raises_disagreement(
        load_psm,
        psm_root,
        files=(str(psm_root / "test.csv"), str(psm_root / "train.csv")),
        values=("'feature_x'", "'feature_3'"),
    )


def test_missing_timestamp_column(psm_root):
    df = pd.read_csv(psm_root / "train.csv").drop(columns=["timestamp_(min)"])
    df.to_csv(psm_root / "train.csv", index=False)
    raises_data_error(load_psm, psm_root, file="train.csv", expect="'timestamp_(min)'")


def test_wrong_dims(psm_root):
    df = pd.read_csv(psm_root / "test.csv").drop(columns=["feature_24"])
    df.to_csv(psm_root / "test.csv", index=False)
    raises_data_error(load_psm, psm_root, file="test.csv", expect="expected 25")


def test_missing_and_corrupt_files(psm_root):
    (psm_root / "test_label.csv").unlink()
    raises_data_error(load_psm, psm_root, file="test_label.csv", expect="label")
    (psm_root / "test.csv").write_text("")
    raises_data_error(load_psm, psm_root, file="test.csv", expect="feature columns")
    (psm_root / "train.csv").write_text('timestamp_(min),feature_0\n1,"unterminated\n')
    raises_data_error(load_psm, psm_root, file="train.csv", expect="feature columns")
