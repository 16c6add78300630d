"""NASA SMAP/MSL telemetry: per-channel (telemanom) and merged (TSLib) layouts.

Per-channel layout (``root`` = the folder holding it, e.g. ``datasets/NASA``)::

    labeled_anomalies.csv      chan_id, spacecraft, anomaly_sequences, class, num_values
    train/<chan_id>.npy        float [T, D]
    test/<chan_id>.npy         float [T', D]

Column 0 is the telemetry value, columns 1..k are one-hot commands. They are named
``value``, ``cmd_1`` .. ``cmd_k``. ``sensors="first"`` models and scores ``value`` and feeds
the commands as covariates (M2AD); ``sensors="all"`` models and scores every column
(MADCluster / TSLib).

``anomaly_sequences`` are 0-based ``[start, end]`` test-row pairs with inclusive ends.

The CSV describes the files, and each loaded channel is held to it: ``num_values`` must equal
the rows of ``test/<chan_id>.npy`` (a test file cut short or swapped is refused, not trained
on), ``spacecraft`` fixes the column count (MSL 55, SMAP 25) and every sequence must end
inside the test rows. A disagreement is a one-line DataError naming both files and values.

SMAP's CSV lists P-2 twice, with different sequences. ``entities="all"`` leaves out every
channel listed more than once (only P-2 in the public CSV), which gives the paper's 53 SMAP
channels / 67 events (and 27 channels / 36 events for MSL). Asking for such a channel by name
loads it with the union of its rows' sequences (overlapping ones merged) and warns.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from madbench.data.entity import Entity
from madbench.data.merged import load_merged_npy
from madbench.data.validate import (
    EXPECTED_DIMS,
    check_2d,
    check_same_dims,
    load_npy,
    read_csv,
    select,
    validate_entity,
)
from madbench.errors import DataError

log = logging.getLogger(__name__)

SPACECRAFT = ("MSL", "SMAP")
SENSORS = ("first", "all")
CSV_NAME = "labeled_anomalies.csv"
CSV_COLUMNS = ("chan_id", "spacecraft", "anomaly_sequences", "class", "num_values")


def nasa_columns(d: int) -> list[str]:
    """``value`` then ``cmd_1`` .. ``cmd_{d-1}``."""
    return ["value"] + [f"cmd_{i}" for i in range(1, d)]


def _split_sensors(columns: list[str], sensors: str) -> tuple[list[str], list[str]]:
    if sensors == "first":
        return columns[:1], columns[1:]
    return list(columns), []


def _check_choice(value: str, allowed: tuple[str, ...], field: str) -> str:
    if value not in allowed:
        raise DataError(f"{field}={value!r}; expected one of {list(allowed)}")
    return value


def _parse_sequences(text: str, csv_path: Path, chan: str) -> list[tuple[int, int]]:
    try:
        seqs = json.loads(text)
        out = [(int(s), int(e)) for s, e in seqs]
    except Exception:
        raise DataError(
            f"{csv_path}: anomaly_sequences {text!r} of {chan}; expected a list like [[start, end], ...]"
        ) from None
    for s, e in out:
        if not 0 <= s <= e:
            raise DataError(f"{csv_path}: sequence [{s}, {e}] of {chan}; expected 0 <= start <= end")
    return out


def _parse_num_values(value, csv_path: Path, chan: str) -> int:
    try:
        n = float(value)
    except (TypeError, ValueError):
        n = float("nan")
    if not (np.isfinite(n) and n == round(n) and n >= 0):
        raise DataError(
            f"{csv_path}: num_values {value!r} of {chan}; expected the number of test rows (a whole number)"
        )
    return int(n)


def _parse_classes(text: str, n: int, csv_path: Path, chan: str) -> list[str]:
    # written as "[contextual, point]", which is not JSON
    items = [t.strip().strip("'\"") for t in str(text).strip().strip("[]").split(",") if t.strip()]
    if len(items) != n:
        raise DataError(f"{csv_path}: {len(items)} classes for {n} anomaly_sequences of {chan}; expected one each")
    return items


def _merge_events(events: list[dict]) -> list[dict]:
    """Union of possibly overlapping inclusive events (used for duplicated channels)."""
    merged: list[dict] = []
    for ev in sorted(events, key=lambda e: (e["start"], e["end"])):
        if merged and ev["start"] <= merged[-1]["end"] + 1:
            last = merged[-1]
            last["end"] = max(last["end"], ev["end"])
            if ev["kind"] != last["kind"]:
                last["kind"] = f"{last['kind']}+{ev['kind']}"
        else:
            merged.append(dict(ev))
    return merged


def read_labeled_anomalies(root: str | Path) -> pd.DataFrame:
    csv_path = Path(root) / CSV_NAME
    df = read_csv(csv_path, f"telemanom's labeled_anomalies.csv ({', '.join(CSV_COLUMNS)})")
    missing = [c for c in CSV_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{csv_path}: no column {missing[0]!r}; expected columns {list(CSV_COLUMNS)}")
    df["chan_id"] = df["chan_id"].astype(str).str.strip()
    df["spacecraft"] = df["spacecraft"].astype(str).str.strip()
    return df


def load_nasa(
    root: str | Path,
    spacecraft: str = "MSL",
    entities: str | Iterable[str] = "all",
    sensors: str = "first",
    min_length: int | None = None,
) -> list[Entity]:
    """One entity per channel of ``spacecraft`` (see the module docstring for the layout)."""
    root = Path(root)
    spacecraft = _check_choice(str(spacecraft).upper(), SPACECRAFT, "spacecraft")
    sensors = _check_choice(sensors, SENSORS, "sensors")
    csv_path = root / CSV_NAME
    df = read_labeled_anomalies(root)
    df = df[df["spacecraft"] == spacecraft]
    if df.empty:
        raise DataError(f"{csv_path}: no rows with spacecraft {spacecraft}; expected MSL and SMAP rows")

    order = list(dict.fromkeys(df["chan_id"]))
    counts = df["chan_id"].value_counts()
    duplicated = [c for c in order if counts[c] > 1]
    if isinstance(entities, str) and entities == "all":
        if duplicated:
            log.info("%s: leaving out %s, listed more than once (as the M2AD paper does)", csv_path, duplicated)
        names = [c for c in order if c not in duplicated]
    else:
        names = select(order, entities, csv_path)

    out = []
    for chan in names:
        rows = df[df["chan_id"] == chan]
        events = []
        num_values = [_parse_num_values(v, csv_path, chan) for v in rows["num_values"]]
        for _, row in rows.iterrows():
            seqs = _parse_sequences(row["anomaly_sequences"], csv_path, chan)
            kinds = _parse_classes(row["class"], len(seqs), csv_path, chan)
            events += [{"start": s, "end": e, "kind": k, "sensors": None} for (s, e), k in zip(seqs, kinds)]
        if len(rows) > 1:
            warnings.warn(
                f"{csv_path}: {chan} is listed {len(rows)} times with different sequences; "
                "using the union of its events",
                stacklevel=2,
            )
            events = _merge_events(events)
        out.append(_load_channel(root, chan, spacecraft, sensors, events, num_values, min_length))
    return out


def _check_spacecraft_dims(arr: np.ndarray, path: Path, csv_path: Path, chan: str, spacecraft: str) -> None:
    expected = EXPECTED_DIMS[spacecraft]
    if arr.shape[1] != expected:
        raise DataError(
            f"{path}: {arr.shape[1]} columns, but {csv_path} gives spacecraft {spacecraft} for {chan}; "
            f"expected {expected} ({spacecraft} dims)"
        )


def _load_channel(
    root: Path,
    chan: str,
    spacecraft: str,
    sensors: str,
    events: list[dict],
    num_values: list[int],
    min_length: int | None,
) -> Entity:
    csv_path = root / CSV_NAME
    train_path, test_path = root / "train" / f"{chan}.npy", root / "test" / f"{chan}.npy"
    what = f"{spacecraft} channel {chan} as a [time, {EXPECTED_DIMS[spacecraft]}] array"
    train = check_2d(load_npy(train_path, what), train_path, what)
    test = check_2d(load_npy(test_path, what), test_path, what)
    _check_spacecraft_dims(train, train_path, csv_path, chan, spacecraft)
    _check_spacecraft_dims(test, test_path, csv_path, chan, spacecraft)
    check_same_dims(train, test, train_path, test_path)
    # before the sequences: a cut-short file would otherwise be blamed on the CSV's sequence
    for n in dict.fromkeys(num_values):
        if len(test) != n:
            raise DataError(
                f"{test_path}: {len(test)} rows, but {csv_path} gives num_values {n} for {chan}; "
                f"expected them to agree (copy test/{chan}.npy from the download again if it was cut short "
                "or replaced, or correct num_values)"
            )

    labels = np.zeros(len(test), dtype=np.int8)
    for ev in events:
        if ev["end"] >= len(test):
            raise DataError(
                f"{csv_path}: sequence [{ev['start']}, {ev['end']}] of {chan} ends past the test data; "
                f"expected end < {len(test)}, the rows in {test_path}"
            )
        labels[ev["start"] : ev["end"] + 1] = 1
    columns = nasa_columns(train.shape[1])
    sens, cov = _split_sensors(columns, sensors)
    entity = Entity(
        name=chan,
        system=spacecraft,
        train=train,
        test=test,
        labels=labels,
        columns=columns,
        sensors=sens,
        covariates=cov,
        meta={
            "events": events,
            "source": {"train": str(train_path), "test": str(test_path), "labels": str(csv_path)},
        },
    )
    return validate_entity(entity, min_length=min_length)


def load_nasa_merged(root: str | Path, name: str = "MSL", min_length: int | None = None) -> list[Entity]:
    """TSLib / Anomaly-Transformer layout: ``<NAME>_train.npy``, ``<NAME>_test.npy``,
    ``<NAME>_test_label.npy`` in ``root``. One entity; every column is a sensor."""
    name = _check_choice(str(name).upper(), SPACECRAFT, "name")
    return [load_merged_npy(root, name, nasa_columns(EXPECTED_DIMS[name]), min_length)]


#: the path that marks this layout's folder (madbench-data finds the folder by it; formatted
#: with the loader's keyword arguments from the dataset YAML)
load_nasa.layout_marker = "labeled_anomalies.csv"


#: the path that marks this layout's folder (madbench-data finds the folder by it; formatted
#: with the loader's keyword arguments from the dataset YAML)
load_nasa_merged.layout_marker = "{name}_train.npy"
