"""madbench's own layout for many systems, each with its own sensors (M2AD's setting).

``root`` (e.g. ``datasets/multisystem``)::

    meta.yaml                    optional: per system, sensors / covariates / groups
    labels.csv                   system,start,end[,kind][,sensors]
    systems/<name>/train.csv     timestamp,<column>,<column>,...
    systems/<name>/test.csv      timestamp,<same columns, same order>

* ``timestamp`` is an integer (any unit, e.g. Unix seconds or a step counter), strictly
  increasing within ``test.csv``. The test timestamps become ``Entity.timestamps``.
* ``labels.csv`` has one row per anomaly. ``start`` and ``end`` are TEST TIMESTAMPS, both
  inclusive: a test row is anomalous when ``start <= timestamp <= end`` for a row of its
  system. Both must lie within the first..last test timestamp, and the event must cover at
  least one test row; anything else is an error (usually a unit mismatch), never clipped. The
  optional ``kind`` column is free text and ``sensors`` lists column names separated by ``;``.
  ``Entity.meta["events"]`` holds the same events as inclusive ROW indices.
* ``meta.yaml``::

      systems:
        pump_1:
          system: plant_a        # optional Entity.system (default: the root folder's name)
          sensors: [p1, p2, t1]  # modelled and scored (default: every column not a covariate)
          covariates: [cmd]      # input only (default: none)
          groups:                # optional M2AD sensor groups -> Entity.meta["groups"]
            pressure: {weight: 2.0, sensors: [p1, p2]}
            temperature: {weight: 1.0, sensors: [t1]}

  A system not listed, or a missing meta.yaml, means every column is a sensor. Columns in
  neither list stay in the arrays but are not used.
* Train may contain empty cells (NaN; imputed later with train means); test may not.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import yaml

from madbench.data.entity import Entity, label_events
from madbench.data.validate import (
    check_min_length,
    integer_column,
    natural_key,
    numeric_matrix,
    read_csv,
    require_dir,
    select,
    validate_entity,
)
from madbench.errors import DataError

TIME = "timestamp"
LABEL_COLUMNS = ("system", "start", "end")
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _read_meta(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise DataError(
            f"{path}: cannot parse as YAML ({' '.join(str(e).split())}); expected a 'systems:' mapping"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("systems", {}), dict):
        raise DataError(f"{path}: expected a mapping with a 'systems:' mapping of system name -> settings")
    systems = data.get("systems") or {}
    for name, spec in systems.items():
        if spec is not None and not isinstance(spec, dict):
            raise DataError(f"{path}: systems.{name} is {type(spec).__name__}; expected a mapping")
    return {str(k): (v or {}) for k, v in systems.items()}


def _name_list(value: Any, path: Path, field: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise DataError(f"{path}: {field} is {value!r}; expected a list of column names")
    return [str(v) for v in value]


def _roles(spec: dict, columns: list[str], name: str, meta_path: Path) -> tuple[list[str], list[str], dict | None]:
    covariates = _name_list(spec.get("covariates"), meta_path, f"systems.{name}.covariates") or []
    sensors = _name_list(spec.get("sensors"), meta_path, f"systems.{name}.sensors")
    if sensors is None:
        sensors = [c for c in columns if c not in covariates]
    for field, names in (("sensors", sensors), ("covariates", covariates)):
        unknown = [c for c in names if c not in columns]
        if unknown:
            raise DataError(
                f"{meta_path}: systems.{name}.{field} names {unknown[0]!r}; expected columns of "
                f"systems/{name}/train.csv: {columns}"
            )
    both = sorted(set(sensors) & set(covariates))
    if both:
        raise DataError(f"{meta_path}: systems.{name}: {both[0]!r} is both sensor and covariate; expected one role")
    groups = spec.get("groups")
    if groups is None:
        return sensors, covariates, None
    if not isinstance(groups, dict):
        raise DataError(f"{meta_path}: systems.{name}.groups; expected a mapping name -> {{weight, sensors}}")
    out = {}
    for g, gspec in groups.items():
        where = f"systems.{name}.groups.{g}"
        if not isinstance(gspec, dict) or "sensors" not in gspec:
            raise DataError(f"{meta_path}: {where}; expected {{weight: w, sensors: [...]}}")
        w = gspec.get("weight", 1.0)
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            raise DataError(f"{meta_path}: {where}.weight is {w!r}; expected a positive number")
        members = _name_list(gspec["sensors"], meta_path, f"{where}.sensors") or []
        bad = [s for s in members if s not in sensors]
        if bad or not members:
            raise DataError(
                f"{meta_path}: {where}.sensors names {bad[:1] or 'nothing'}; expected sensors of {name}: {sensors}"
            )
        out[str(g)] = {"weight": float(w), "sensors": members}
    return sensors, covariates, out


def _read_split(path: Path, split: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    what = f"a {TIME!r} column then numeric columns"
    df = read_csv(path, what)
    t = integer_column(df, TIME, path)
    if split == "test" and len(t) > 1 and (np.diff(t) <= 0).any():
        i = int(np.flatnonzero(np.diff(t) <= 0)[0]) + 1
        raise DataError(
            f"{path}: {TIME} {t[i]} at row {i} is not after {t[i - 1]}; expected strictly increasing timestamps"
        )
    feats = df.drop(columns=[TIME])
    if feats.shape[1] == 0:
        raise DataError(f"{path}: only a {TIME!r} column; expected at least one data column")
    return t, [str(c) for c in feats.columns], numeric_matrix(feats, path, "numeric data columns")


def _read_labels(path: Path) -> pd.DataFrame:
    what = f"columns {','.join(LABEL_COLUMNS)}[,kind][,sensors] (inclusive test timestamps)"
    if not path.is_file():
        raise DataError(f"{path}: file not found; expected {what} (a header-only file if there are no anomalies)")
    try:
        df = pd.read_csv(path, dtype={"system": str, "kind": str, "sensors": str}, keep_default_na=False)
    except Exception as e:
        raise DataError(f"{path}: cannot parse as CSV ({' '.join(str(e).split())}); expected {what}") from None
    missing = [c for c in LABEL_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r}; expected {what}")
    for c in ("start", "end"):
        v = pd.to_numeric(df[c], errors="coerce")
        if v.isna().any() or (v != v.round()).any():
            i = int(np.flatnonzero((v.isna() | (v != v.round())).to_numpy())[0])
            raise DataError(f"{path}: {c}={df[c].iloc[i]!r} at row {i}; expected integer timestamps")
        df[c] = v.astype(np.int64)
    bad = df["start"] > df["end"]
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{path}: start {df['start'].iloc[i]} > end {df['end'].iloc[i]} at row {i}; expected start <= end"
        )
    return df


def list_systems(root: str | Path) -> list[str]:
    d = require_dir(Path(root) / "systems", "one folder per system: systems/<name>/{train,test}.csv")
    names = sorted((p.name for p in d.iterdir() if p.is_dir()), key=natural_key)
    if not names:
        raise DataError(f"{d}: no system folders; expected systems/<name>/{{train,test}}.csv")
    return names


def load_multisystem(
    root: str | Path, entities: str | Iterable[str] = "all", min_length: int | None = None
) -> list[Entity]:
    """One entity per folder under ``systems/`` (see the module docstring for the layout)."""
    root = Path(root)
    available = list_systems(root)
    names = select(available, entities, root / "systems")
    meta_path, labels_path = root / "meta.yaml", root / "labels.csv"
    meta = _read_meta(meta_path)
    unknown = [s for s in meta if s not in available]
    if unknown:
        raise DataError(f"{meta_path}: systems.{unknown[0]} has no folder; expected one of {available}")
    label_df = _read_labels(labels_path)
    unknown = sorted(set(label_df["system"]) - set(available))
    if unknown:
        raise DataError(f"{labels_path}: system {unknown[0]!r} has no folder; expected one of {available}")

    out = []
    for name in names:
        train_path, test_path = root / "systems" / name / "train.csv", root / "systems" / name / "test.csv"
        train_t, train_cols, train = _read_split(train_path, "train")
        test_t, test_cols, test = _read_split(test_path, "test")
        if test_cols != train_cols:
            raise DataError(f"{test_path}: columns {test_cols}; expected the columns of train.csv: {train_cols}")
        check_min_length(len(train), min_length, train_path, "train")
        check_min_length(len(test), min_length, test_path, "test")
        spec = meta.get(name, {})
        sensors, covariates, groups = _roles(spec, train_cols, name, meta_path)

        labels = np.zeros(len(test), dtype=np.int8)
        events = []
        rows = label_df[label_df["system"] == name]
        for i, row in rows.iterrows():
            if row["start"] < test_t[0] or row["end"] > test_t[-1]:
                raise DataError(
                    f"{labels_path}: row {i} ({name}, {row['start']}..{row['end']}) reaches outside the test "
                    f"timestamps of {test_path}; expected start and end within {test_t[0]}..{test_t[-1]} "
                    f"(in the unit of its {TIME!r} column)"
                )
            lo = int(np.searchsorted(test_t, row["start"], side="left"))
            hi = int(np.searchsorted(test_t, row["end"], side="right")) - 1
            if hi < lo:
                raise DataError(
                    f"{labels_path}: row {i} ({name}, {row['start']}..{row['end']}) covers no test timestamp; "
                    f"expected timestamps within {test_t[0]}..{test_t[-1]} of {test_path.name}"
                )
            labels[lo : hi + 1] = 1
            ev_sensors = None
            if "sensors" in rows.columns and str(row["sensors"]).strip():
                ev_sensors = [s.strip() for s in str(row["sensors"]).split(";") if s.strip()]
                bad = [s for s in ev_sensors if s not in train_cols]
                if bad:
                    raise DataError(
                        f"{labels_path}: row {i} names sensor {bad[0]!r}, but {train_path} has columns "
                        f"{train_cols}; expected columns of {name}"
                    )
            kind = str(row["kind"]).strip() if "kind" in rows.columns and str(row["kind"]).strip() else "anomaly"
            events.append({"start": lo, "end": hi, "kind": kind, "sensors": ev_sensors})

        entity_meta: dict[str, Any] = {
            "events": sorted(events, key=lambda e: (e["start"], e["end"])),
            "train_timestamps": train_t,
            "source": {"train": str(train_path), "test": str(test_path), "labels": str(labels_path)},
        }
        if meta_path.is_file():
            entity_meta["source"]["meta"] = str(meta_path)
        if groups is not None:
            entity_meta["groups"] = groups
        entity = Entity(
            name=name,
            system=str(spec.get("system", root.resolve().name)),
            train=train,
            test=test,
            labels=labels,
            columns=train_cols,
            sensors=sensors,
            covariates=covariates,
            timestamps=test_t,
            meta=entity_meta,
        )
        out.append(validate_entity(entity, min_length=min_length))
    return out


def _label_rows(e: Entity) -> list[tuple[int, int, str, list | None]]:
    """``meta["events"]`` when they reproduce ``labels`` exactly (keeps kind, sensors and
    overlapping events), otherwise the runs of ``labels``."""
    events = [ev for ev in e.meta.get("events") or [] if isinstance(ev, dict) and "start" in ev and "end" in ev]
    if events:
        y = np.zeros(len(e.labels), dtype=np.int8)
        ok = True
        for ev in events:
            s, t = int(ev["start"]), int(ev["end"])
            if not 0 <= s <= t < len(y):
                ok = False
                break
            y[s : t + 1] = 1
        if ok and np.array_equal(y, e.labels):
            return [
                (int(ev["start"]), int(ev["end"]), str(ev.get("kind") or "anomaly"), ev.get("sensors")) for ev in events
            ]
    return [(s, t, "anomaly", None) for s, t in label_events(e.labels)]


def write_multisystem(entities: Sequence[Entity], out_dir: str | Path) -> Path:
    """Write ``entities`` in the multisystem layout under ``out_dir`` (created if needed).

    Labels are written by test timestamp (inclusive): one row per event of ``meta["events"]``
    when those events reproduce ``Entity.labels`` exactly, otherwise one per run of labels. Train
    timestamps come from ``meta["train_timestamps"]`` or are ``0 .. T-1``. Floats are written
    with 9 significant digits, enough to read float32 back exactly.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [e.name for e in entities]
    if len(set(names)) != len(names):
        raise DataError(f"{out}: entity names {names} repeat; expected one folder per system")
    meta: dict[str, dict] = {}
    label_rows = []
    for e in entities:
        if not _SAFE.match(e.name):
            raise DataError(f"{out}: entity name {e.name!r}; expected letters, digits, '.', '_' or '-'")
        if TIME in e.columns:
            raise DataError(f"{out}: entity {e.name} has a column named {TIME!r}; expected it to be free for the time")
        sdir = out / "systems" / e.name
        sdir.mkdir(parents=True, exist_ok=True)
        train_t = e.meta.get("train_timestamps")
        train_t = np.arange(len(e.train), dtype=np.int64) if train_t is None else np.asarray(train_t, np.int64)
        for split, x, t in (("train", e.train, train_t), ("test", e.test, e.timestamps)):
            df = pd.DataFrame(x, columns=list(e.columns))
            df.insert(0, TIME, np.asarray(t, dtype=np.int64))
            df.to_csv(sdir / f"{split}.csv", index=False, float_format="%.9g")
        spec: dict[str, Any] = {"system": e.system, "sensors": list(e.sensors), "covariates": list(e.covariates)}
        if e.meta.get("groups"):
            spec["groups"] = {
                str(g): {"weight": float(v["weight"]), "sensors": [str(s) for s in v["sensors"]]}
                for g, v in e.meta["groups"].items()
            }
        meta[e.name] = spec
        for s, t_end, kind, sens in _label_rows(e):
            label_rows.append(
                {
                    "system": e.name,
                    "start": int(e.timestamps[s]),
                    "end": int(e.timestamps[t_end]),
                    "kind": kind,
                    "sensors": ";".join(str(x) for x in sens) if sens else "",
                }
            )
    pd.DataFrame(label_rows, columns=["system", "start", "end", "kind", "sensors"]).to_csv(
        out / "labels.csv", index=False
    )
    (out / "meta.yaml").write_text(yaml.safe_dump({"systems": meta}, sort_keys=False, default_flow_style=None))
    return out


#: the path that marks this layout's folder (madbench-data finds the folder by it; formatted
#: with the loader's keyword arguments from the dataset YAML)
load_multisystem.layout_marker = "systems"
