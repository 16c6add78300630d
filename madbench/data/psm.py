"""PSM (eBay Pooled Server Metrics), the TSLib / RANSynCoders layout.

``root`` (e.g. ``datasets/PSM``) holds ``train.csv`` and ``test.csv`` (header
``timestamp_(min),feature_0,...,feature_24``) and ``test_label.csv``
(``timestamp_(min),label``). The timestamp column becomes ``Entity.timestamps`` (test) and
is not a feature; the 25 feature columns keep their header names and are all sensors.

The public train file has NaNs. They are mean-imputed here with train statistics only
(``meta["imputed"]`` counts them); test NaN/inf is an error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from madbench.data.entity import Entity
from madbench.data.preprocess import column_means, impute
from madbench.data.validate import (
    EXPECTED_DIMS,
    check_dims,
    check_labels,
    events_from_labels,
    integer_column,
    numeric_matrix,
    read_csv,
    validate_entity,
)
from madbench.errors import DataError

DIMS = EXPECTED_DIMS["PSM"]
TIME = "timestamp_(min)"


def _split_time(df, path: Path, what: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    if df.columns[0] != TIME:
        raise DataError(f"{path}: first column is {df.columns[0]!r}; expected {TIME!r}")
    t = integer_column(df, TIME, path)
    feats = df.drop(columns=[TIME])
    return t, [str(c) for c in feats.columns], numeric_matrix(feats, path, what)


def load_psm(root: str | Path, min_length: int | None = None) -> list[Entity]:
    root = Path(root)
    paths = {k: root / f"{k}.csv" for k in ("train", "test", "test_label")}
    what = f"PSM {TIME} + {DIMS} feature columns"
    _, train_cols, train = _split_time(read_csv(paths["train"], what), paths["train"], what)
    test_t, test_cols, test = _split_time(read_csv(paths["test"], what), paths["test"], what)
    check_dims(train, DIMS, paths["train"], "PSM")
    check_dims(test, DIMS, paths["test"], "PSM")
    if test_cols != train_cols:
        j = next(j for j, (a, b) in enumerate(zip(test_cols, train_cols)) if a != b)
        raise DataError(
            f"{paths['test']}: column {test_cols[j]!r} where {paths['train']} has {train_cols[j]!r}; "
            "expected the same columns in the same order"
        )

    lab_df = read_csv(paths["test_label"], f"{TIME},label with one row per test row")
    label_t, _, lab = _split_time(lab_df, paths["test_label"], "a 0/1 label column")
    if lab.shape[1] != 1:
        raise DataError(f"{paths['test_label']}: {lab.shape[1]} value columns; expected one label column")
    labels = check_labels(lab[:, 0], len(test), paths["test_label"], paths["test"])
    if not np.array_equal(label_t, test_t):
        i = int(np.flatnonzero(label_t != test_t)[0])
        raise DataError(
            f"{paths['test_label']}: {TIME} {label_t[i]} at row {i}, but {paths['test']} has {test_t[i]}; "
            "expected the same timestamps row by row"
        )

    imputed = int((~np.isfinite(train)).sum())
    train = impute(train, column_means(train))
    entity = Entity(
        name="PSM",
        system="PSM",
        train=train,
        test=test,
        labels=labels,
        columns=train_cols,
        sensors=list(train_cols),
        timestamps=test_t,
        meta={
            "events": events_from_labels(labels),
            "imputed": imputed,
            "source": {k if k != "test_label" else "labels": str(p) for k, p in paths.items()},
        },
    )
    return [validate_entity(entity, min_length=min_length)]


#: the path that marks this layout's folder (madbench-data finds the folder by it; formatted
#: with the loader's keyword arguments from the dataset YAML)
load_psm.layout_marker = "test_label.csv"
