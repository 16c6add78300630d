import numpy as np
import pytest

from madbench.data.entity import Entity
from madbench.data.validate import (
    check_dims,
    check_labels,
    find_file,
    load_npy,
    natural_key,
    require_file,
    select,
    summarize,
    validate_entity,
)
from madbench.errors import DataError

from .helpers import raises_data_error


def _entity(**kw):
    train = np.array([[1.0, 5.0, np.nan], [2.0, 5.0, 1.0], [np.inf, 5.0, 2.0]])
    test = np.zeros((4, 3))
    base = dict(
        name="e",
        system="s",
        train=train,
        test=test,
        labels=[0, 1, 1, 0],
        columns=["a", "b", "c"],
        sensors=["a", "b"],
        covariates=["c"],
    )
    base.update(kw)
    return Entity(**base)


def test_summarize():
    r = summarize(_entity())
    assert r["train"] == (3, 3) and r["test"] == (4, 3)
    assert r["label_pct"] == 50.0 and r["events"] == 1
    assert (r["train_nan"], r["train_inf"], r["test_nan"], r["test_inf"]) == (1, 1, 0, 0)
    assert r["constant_columns"] == ["b"]  # non-finite values are ignored
    assert (r["sensors"], r["covariates"]) == (2, 1)
    r = summarize(_entity(meta={"events": [{"start": 1, "end": 1}, {"start": 2, "end": 2}]}))
    assert r["events"] == 2  # meta events win over label runs (adjacent events stay two)


def test_validate_entity_names_source_file():
    e = _entity(test=np.full((4, 3), np.nan), meta={"source": {"train": "x/train.npy", "test": "x/test.npy"}})
    raises_data_error(validate_entity, e, file="x/test.npy", expect="finite")
    e = _entity(meta={"source": {"train": "x/train.npy", "test": "x/test.npy"}})
    raises_data_error(validate_entity, e, min_length=4, file="x/train.npy", expect="at least 4")
    raises_data_error(validate_entity, e, expected_dims=5, file="x/train.npy", expect="expected 5")
    assert validate_entity(e, min_length=3, expected_dims=3) is e


def test_file_checks(tmp_path):
    raises_data_error(require_file, tmp_path / "a.csv", "a table", file="a.csv", expect="a table")
    raises_data_error(find_file, tmp_path / "m", (".txt", ".txt.gz"), "data", file="m.txt", expect="m.txt.gz")
    (tmp_path / "bad.npy").write_text("junk")
    raises_data_error(load_npy, tmp_path / "bad.npy", "an array", file="bad.npy", expect="an array")
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    raises_data_error(load_npy, tmp_path / "s.npy", "an array", file="s.npy", expect="an array")


def test_label_and_dim_checks():
    assert check_labels(np.array([[0.0], [1.0]]), 2, "l.npy", "t.npy").tolist() == [0, 1]
    raises_data_error(check_labels, np.array([0, np.nan]), 2, "l.npy", "t.npy", file="l.npy", expect="0 and 1")
    raises_data_error(check_labels, np.zeros((2, 2)), 2, "l.npy", "t.npy", file="l.npy", expect="one 0/1 label")
    raises_data_error(check_dims, np.zeros((2, 3)), 4, "t.npy", "X", file="t.npy", expect="expected 4 (X dims)")


def test_select_and_order():
    assert select(["a", "b"], "all", "w") == ["a", "b"]
    assert select(["a", "b"], "b", "w") == ["b"]
    with pytest.raises(DataError, match="duplicates"):
        select(["a", "b"], ["a", "a"], "w")
    assert sorted(["m-1-10", "m-1-2", "m-2-1"], key=natural_key) == ["m-1-2", "m-1-10", "m-2-1"]
