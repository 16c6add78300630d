"""Server Machine Dataset (SMD): OmniAnomaly per-machine layout and the merged TSLib layout.

Per-machine layout (``root`` = the ``ServerMachineDataset`` folder, e.g. ``datasets/SMD``)::

    train/machine-X-Y.txt[.gz]            comma-separated floats, no header, 38 columns
    test/machine-X-Y.txt[.gz]             same
    test_label/machine-X-Y.txt[.gz]       one 0/1 per line, one line per test row
    interpretation_label/machine-X-Y.txt[.gz]  optional; lines ``start-end:d1,d2,...``

The files have no header, so the first line is data (one reference loader drops it).
Columns are named ``dim_0`` .. ``dim_37`` (0-based: ``dim_i`` is column ``i``).

Interpretation lines use 0-based test rows with an EXCLUSIVE end and 1-based dims (on the
public files, 264 of the 268 ranges are exactly a run of ``test_label``). They are stored in
``meta["interpretation"]`` as ``{"start", "end", "columns", "sensors"}`` with an INCLUSIVE
``end`` (``end = file_end - 1``, like every madbench event), ``columns`` the 0-based column
indices and ``sensors`` their names. ``meta["events"]`` holds the runs of ``test_label``; each
event's ``sensors`` is the union of the interpretation ranges that overlap it (None if none).

A range past the test rows or a dim outside the columns is refused, naming both files. Ranges
are NOT required to match ``test_label``, because the public files don't (the 4 ranges above;
machine-2-3's ``7910-8010`` covers 9 rows that ``test_label`` leaves unlabelled).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import numpy as np

from madbench.data.entity import Entity, label_events
from madbench.data.merged import load_merged_npy
from madbench.data.validate import (
    EXPECTED_DIMS,
    check_dims,
    check_labels,
    check_same_dims,
    find_file,
    natural_key,
    numeric_matrix,
    read_csv,
    read_text,
    require_dir,
    select,
    validate_entity,
)
from madbench.errors import DataError

DIMS = EXPECTED_DIMS["SMD"]
SUFFIXES = (".txt", ".txt.gz")
_MACHINE = re.compile(r"^(machine-\d+-\d+)\.txt(\.gz)?$")
_INTERP = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*:\s*(\d+(?:\s*,\s*\d+)*)\s*$")


def smd_columns(d: int = DIMS) -> list[str]:
    return [f"dim_{i}" for i in range(d)]


def list_machines(root: str | Path) -> list[str]:
    """Machines present in ``root/test`` (plain or gzipped), in natural order."""
    test_dir = require_dir(Path(root) / "test", "OmniAnomaly's test/machine-X-Y.txt files")
    names = {m.group(1) for p in test_dir.iterdir() if (m := _MACHINE.match(p.name))}
    if not names:
        raise DataError(f"{test_dir}: no machine-X-Y.txt or machine-X-Y.txt.gz files; expected SMD test files")
    return sorted(names, key=natural_key)


def _read_matrix(path: Path, what: str) -> np.ndarray:
    df = read_csv(path, what, header=None, sep=",")
    return numeric_matrix(df, path, what)


def parse_interpretation(
    path: Path, n_test: int, columns: list[str], test_path: Path | str = "the test file"
) -> list[dict]:
    """``path``'s ranges, held to the test file they describe (``n_test`` rows, ``columns``)."""
    out = []
    text = read_text(path, "lines 'start-end:dim,dim,...'")
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = _INTERP.match(line)
        if not m:
            raise DataError(f"{path}: line {lineno} {line.strip()!r}; expected 'start-end:dim,dim,...'")
        start, end_excl = int(m.group(1)), int(m.group(2))
        dims = [int(d) for d in m.group(3).split(",")]
        if start >= end_excl:
            raise DataError(f"{path}: line {lineno} range {start}-{end_excl}; expected start < end (end exclusive)")
        if end_excl > n_test:
            raise DataError(
                f"{path}: line {lineno} range {start}-{end_excl}, but {test_path} has {n_test} rows; "
                f"expected 0 <= start < end <= {n_test}"
            )
        if any(not 1 <= d <= len(columns) for d in dims):
            raise DataError(
                f"{path}: line {lineno} dims {dims}, but {test_path} has {len(columns)} columns; "
                f"expected 1-based dims in 1..{len(columns)}"
            )
        cols = sorted({d - 1 for d in dims})
        out.append({"start": start, "end": end_excl - 1, "columns": cols, "sensors": [columns[c] for c in cols]})
    return out


def _events(labels: np.ndarray, interpretation: list[dict] | None, columns: list[str]) -> list[dict]:
    events = []
    for s, e in label_events(labels):
        cols = sorted(
            {c for it in (interpretation or []) if it["start"] <= e and it["end"] >= s for c in it["columns"]}
        )
        events.append({"start": s, "end": e, "kind": "anomaly", "sensors": [columns[c] for c in cols] or None})
    return events


def load_smd(root: str | Path, entities: str | Iterable[str] = "all", min_length: int | None = None) -> list[Entity]:
    """One entity per machine (see the module docstring for layout and conventions)."""
    root = Path(root)
    names = select(list_machines(root), entities, root / "test")
    columns = smd_columns()
    out = []
    for machine in names:
        what = f"{DIMS} comma-separated floats per line, no header"
        train_path = find_file(root / "train" / machine, SUFFIXES, f"SMD train data, {what}")
        test_path = find_file(root / "test" / machine, SUFFIXES, f"SMD test data, {what}")
        label_path = find_file(root / "test_label" / machine, SUFFIXES, "one 0/1 label per test row")
        train = _read_matrix(train_path, what)
        test = _read_matrix(test_path, what)
        check_dims(train, DIMS, train_path, "SMD")
        check_dims(test, DIMS, test_path, "SMD")
        check_same_dims(train, test, train_path, test_path)
        raw = _read_matrix(label_path, "one 0/1 label per test row")
        if raw.shape[1] != 1:
            raise DataError(f"{label_path}: {raw.shape[1]} values per line; expected one 0/1 label per line")
        labels = check_labels(raw[:, 0], len(test), label_path, test_path)

        interp_path = next(
            (p for s in SUFFIXES if (p := root / "interpretation_label" / f"{machine}{s}").is_file()), None
        )
        interpretation = (
            parse_interpretation(interp_path, len(test), columns, test_path) if interp_path is not None else None
        )
        source = {"train": str(train_path), "test": str(test_path), "labels": str(label_path)}
        if interpretation is not None:
            source["interpretation"] = str(interp_path)
        entity = Entity(
            name=machine,
            system="SMD",
            train=train,
            test=test,
            labels=labels,
            columns=columns,
            sensors=list(columns),
            meta={
                "events": _events(labels, interpretation, columns),
                "interpretation": interpretation,
                "source": source,
            },
        )
        out.append(validate_entity(entity, min_length=min_length))
    return out


def load_smd_merged(root: str | Path, min_length: int | None = None) -> list[Entity]:
    """TSLib layout: ``SMD_train.npy``, ``SMD_test.npy``, ``SMD_test_label.npy`` in ``root``."""
    return [load_merged_npy(root, "SMD", smd_columns(), min_length)]


#: the path that marks this layout's folder (madbench-data finds the folder by it; formatted
#: with the loader's keyword arguments from the dataset YAML)
load_smd.layout_marker = "test"


#: the path that marks this layout's folder (madbench-data finds the folder by it; formatted
#: with the loader's keyword arguments from the dataset YAML)
load_smd_merged.layout_marker = "SMD_train.npy"
