"""Shared checks for the dataset loaders, and the per-entity summary behind `madbench-data check`.

Every check raises :class:`~madbench.errors.DataError` with ONE line that names the file
and says what was expected, so the CLI and the runner can print it without a traceback.
Train NaN/inf is allowed (it is mean-imputed later with train statistics); test NaN/inf is
not, because a score cannot be placed on a row that has no value.
"""

from __future__ import annotations

import gzip
import os
import re
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from madbench.data.entity import Entity, label_events
from madbench.errors import DataError

#: Column counts of the public datasets (all columns, sensors and covariates together).
EXPECTED_DIMS = {"MSL": 55, "SMAP": 25, "SMD": 38, "PSM": 25}

PathLike = str | os.PathLike


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def require_file(path: PathLike, what: str) -> Path:
    """Return ``path`` if it is a file, otherwise raise naming what it should hold."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found; expected {what}")
    return p


def require_dir(path: PathLike, what: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise DataError(f"{p}: directory not found; expected {what}")
    return p


def find_file(stem: PathLike, suffixes: Sequence[str], what: str) -> Path:
    """First existing ``stem + suffix`` (e.g. ``.txt`` then ``.txt.gz``)."""
    stem = str(stem)
    for s in suffixes:
        p = Path(stem + s)
        if p.is_file():
            return p
    alts = " or ".join(Path(stem + s).name for s in suffixes)
    raise DataError(f"{stem}{suffixes[0]}: file not found; expected {what} ({alts})")


def load_npy(path: PathLike, what: str = "a NumPy array") -> np.ndarray:
    """``np.load`` with missing/corrupt files turned into one-line DataErrors."""
    p = require_file(path, what)
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as e:  # numpy raises ValueError/OSError/EOFError/UnpicklingError
        raise DataError(f"{p}: cannot read as .npy ({_one_line(e)}); expected {what}") from None
    if not isinstance(arr, np.ndarray):
        raise DataError(f"{p}: holds an archive, not an array; expected {what}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(f"{p}: dtype {arr.dtype} is not numeric; expected {what}")
    return arr


def read_text(path: PathLike, what: str) -> str:
    """A text file's contents, gunzipped when the name ends in ``.gz``."""
    p = require_file(path, what)
    try:
        if p.name.endswith(".gz"):
            with gzip.open(p, "rt") as f:
                return f.read()
        return p.read_text()
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: cannot read as text ({_one_line(e)}); expected {what}") from None


def read_csv(path: PathLike, what: str, **kwargs: Any) -> pd.DataFrame:
    """``pd.read_csv`` (gzip inferred from the name) with one-line DataErrors."""
    p = require_file(path, what)
    try:
        df = pd.read_csv(p, **kwargs)
    except pd.errors.EmptyDataError:
        raise DataError(f"{p}: file is empty; expected {what}") from None
    except Exception as e:
        raise DataError(f"{p}: cannot parse as CSV ({_one_line(e)}); expected {what}") from None
    if len(df) == 0:
        raise DataError(f"{p}: no data rows; expected {what}")
    return df


def numeric_matrix(df: pd.DataFrame, path: PathLike, what: str) -> np.ndarray:
    """All columns of ``df`` as float64, naming the first non-numeric cell if any."""
    try:
        return df.to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        pass
    for j, col in enumerate(df.columns):
        conv = pd.to_numeric(df[col], errors="coerce")
        bad = conv.isna() & df[col].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{path}: non-numeric value {df[col].iloc[i]!r} at row {i}, column {col!r}; expected {what}"
            )
    raise DataError(f"{path}: cannot convert to numbers; expected {what}")  # pragma: no cover


def integer_column(df: pd.DataFrame, column: str, path: PathLike) -> np.ndarray:
    """``df[column]`` as int64, refusing missing or fractional values (timestamps)."""
    if column not in df.columns:
        raise DataError(f"{path}: no {column!r} column; expected it to hold integer timestamps")
    t = numeric_matrix(df[[column]], path, f"integer {column} values")[:, 0]
    bad = ~np.isfinite(t) | (t != np.round(t))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: {column} {df[column].iloc[i]!r} at row {i}; expected integer timestamps")
    return t.astype(np.int64)


def events_from_labels(labels: np.ndarray) -> list[dict]:
    """``meta["events"]`` for a dataset whose only event record is the point labels."""
    return [{"start": s, "end": e, "kind": "anomaly", "sensors": None} for s, e in label_events(labels)]


def check_2d(arr: np.ndarray, path: PathLike, what: str) -> np.ndarray:
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"{path}: array of shape {arr.shape}; expected {what} as a 2-D [time, dims] array")
    return arr


def check_dims(arr: np.ndarray, expected: int | None, path: PathLike, dataset: str = "") -> None:
    if expected is None:
        return
    if arr.ndim != 2 or arr.shape[1] != expected:
        got = arr.shape[1] if arr.ndim == 2 else f"shape {arr.shape}"
        ds = f"{dataset} " if dataset else ""
        raise DataError(f"{path}: {got} columns; expected {expected} ({ds}dims)")


def check_same_dims(train: np.ndarray, test: np.ndarray, train_path: PathLike, test_path: PathLike) -> None:
    if train.shape[1] != test.shape[1]:
        raise DataError(f"{test_path}: {test.shape[1]} columns; expected {train.shape[1]} like {Path(train_path).name}")


def check_labels(labels: np.ndarray, n_test: int, label_path: PathLike, test_path: PathLike) -> np.ndarray:
    """Labels must be 1-D (or [T, 1]), one per test row, and 0/1."""
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{label_path}: labels of shape {y.shape}; expected one 0/1 label per test row")
    if len(y) != n_test:
        raise DataError(
            f"{label_path}: {len(y)} labels, but {test_path} has {n_test} rows; expected one label per test row"
        )
    if y.dtype != bool:
        finite = np.isfinite(y) if np.issubdtype(y.dtype, np.floating) else np.ones(len(y), bool)
        bad = ~finite | ~np.isin(y, (0, 1))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{label_path}: label {y[i]!r} at row {i}; expected only 0 and 1")
    return y.astype(np.int8)


def check_min_length(n: int, min_length: int | None, path: PathLike, split: str) -> None:
    if min_length is not None and n < int(min_length):
        raise DataError(
            f"{path}: {split} has {n} rows; expected at least {int(min_length)} (the window, dataset.window)"
        )


def check_finite_test(test: np.ndarray, path: PathLike) -> None:
    bad = ~np.isfinite(test)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(
            f"{path}: {int(bad.sum())} NaN/inf value(s) in test data (first at row {r}, column {c}); "
            "expected finite test values (only train may have NaN, it is imputed)"
        )


def select(available: Sequence[str], entities: str | Iterable[str] | None, where: PathLike) -> list[str]:
    """Resolve ``entities="all"`` or a list of names against what is on disk (keeps the list's order)."""
    if entities is None or (isinstance(entities, str) and entities == "all"):
        return list(available)
    if isinstance(entities, str):
        entities = [entities]
    wanted = [str(e) for e in entities]
    missing = [e for e in wanted if e not in available]
    if missing:
        shown = ", ".join(list(available)[:12]) + (", ..." if len(available) > 12 else "")
        raise DataError(f"{where}: no entity {missing[0]!r}; expected one of {shown}")
    if len(set(wanted)) != len(wanted):
        raise DataError(f"{where}: entity list {wanted} has duplicates; expected each name once")
    return wanted


def natural_key(name: str) -> list:
    """machine-1-2 < machine-1-10 (numbers compared as numbers)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def validate_entity(entity: Entity, min_length: int | None = None, expected_dims: int | None = None) -> Entity:
    """Checks that need the built entity; ``meta['source']`` names the files in messages."""
    src = entity.meta.get("source", {}) if isinstance(entity.meta.get("source"), dict) else {}
    train_path = src.get("train", entity.name)
    test_path = src.get("test", entity.name)
    check_dims(entity.train, expected_dims, train_path, entity.system)
    check_dims(entity.test, expected_dims, test_path, entity.system)
    check_min_length(len(entity.train), min_length, train_path, "train")
    check_min_length(len(entity.test), min_length, test_path, "test")
    check_finite_test(entity.test, test_path)
    return entity


def summarize(entity: Entity) -> dict[str, Any]:
    """One row of the check table (plain Python values)."""
    tr, te = entity.train, entity.test
    n_events = len(entity.meta["events"]) if "events" in entity.meta else len(label_events(entity.labels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lo = np.nanmin(np.where(np.isfinite(tr), tr, np.nan), axis=0) if len(tr) else np.zeros(tr.shape[1])
        hi = np.nanmax(np.where(np.isfinite(tr), tr, np.nan), axis=0) if len(tr) else np.zeros(tr.shape[1])
    const = [c for c, a, b in zip(entity.columns, lo, hi) if not (a < b)]
    return {
        "entity": entity.name,
        "system": entity.system,
        "train": tuple(tr.shape),
        "test": tuple(te.shape),
        "sensors": len(entity.sensors),
        "covariates": len(entity.covariates),
        "label_pct": float(100.0 * entity.labels.mean()) if len(entity.labels) else 0.0,
        "events": n_events,
        "train_nan": int(np.isnan(tr).sum()),
        "train_inf": int(np.isinf(tr).sum()),
        "test_nan": int(np.isnan(te).sum()),
        "test_inf": int(np.isinf(te).sum()),
        "imputed": int(entity.meta.get("imputed", 0)),
        "constant_columns": const,
    }
