"""The run directory: one module writes and reads every file of it, and migrates old ones.

A run dir holds ``config.yaml`` (the composed config), ``results.csv`` (the long result
rows), ``scores.npz`` (every entity's scores, so everything after the score stage can be
re-run without training), ``train_log.csv`` (per-epoch losses), ``anomalies.csv`` (the m2ad
protocol's detected intervals), ``plots/`` and, for a detector saved by the Python API
(``madbench.Detector.save``), ``model.pt`` (the trained models and what scoring needs
after them: :class:`Checkpoint`). Every write is atomic (a temporary file in
the same directory, then a rename), so a killed job never leaves a half-written file and a
collector never reads one; files get the permissions the user's umask gives.

``scores.npz`` is a versioned format (``SCORES_VERSION``). Its ``__meta__`` (JSON) names
the format, the version, the entities in order, the model window, the steps a window's
score describes (``score_offsets``), the sensor groups and the config_hash. Entity ``i``'s
arrays are ``e{i}/<field>``: the score stage's output of both splits (``test/step``,
``test/residuals``, ``test/window``, ``test/window_start``, ``test/factor``, every part of
the score placed on its own as ``test/part/<name>`` and ``test/window_part/<name>``, the
part that is final as ``test/score_mode``, and the same under ``train/``), the scoring
stage's output (``score``, ``train_score``, ``p``,
``flags``, ``sensor_p``, ``status``), the labels, sensors and validation mask, and the
attribution's arrays (``attribution/<name>``). :func:`write_scores` and
:func:`read_scores` are inverses over :class:`StoredEntity`.

Older run dirs are read through ``MIGRATIONS`` (scores) and :func:`migrate_config`
(config.yaml), and nowhere else: a reader never branches on what an old file lacks.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf, open_dict

from madbench.errors import DataError
from madbench.metrics import METRIC_COLUMNS
from madbench.metrics.interpretation import INTERPRETATION_COLUMNS
from madbench.protocols import EntityScores
from madbench.scoring.base import SeriesScores

SCORES_FORMAT = "madbench.scores"
#: 1: ``<entity>__<field>`` keys, no version (madbench before the run-dir module);
#: 2: entities by index, ``e{i}/<split>/<field>``, versioned meta;
#: 3: ``train_scored`` in the meta (the train split may be scored in part: madbench.train_scores)
SCORES_VERSION = 3

ID_COLUMNS = ["run_id", "config_hash", "seed", "name", "pipeline", "arm", "dataset", "backbone", "objective", "head",
              "scoring", "protocol", "entity", "aggregate", "status", "error"]
# trained: false when a detector that learns by gradient descent ran no epoch
# (trainer.epochs=0): its scores are its initial weights
SIZE_COLUMNS = ["n_entities", "n_train", "n_test", "n_sensors", "n_inputs", "n_scored", "n_missing", "epochs_run",
                "trained", "fit_seconds", "score_seconds", "total_seconds", "finished_at"]
# the interpretation columns rank sensors against test labels (never a threshold); empty
# where the dataset names no ground-truth sensors
RESULT_COLUMNS = ID_COLUMNS + SIZE_COLUMNS + ["threshold", "threshold_uses_test_labels"] + list(METRIC_COLUMNS) \
    + list(INTERPRETATION_COLUMNS)


# -- writing files -----------------------------------------------------------------------------
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path`` (same directory, so atomic). The
    file gets the permissions the user's umask gives a new file (0644 under umask 022):
    ``mkstemp`` makes its file owner-only, which would keep collaborators on a shared
    cluster from reading each other's results."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# -- results.csv and train_log.csv ---------------------------------------------------------------
#: columns that hold counts: written as integers (``n_train 3000``, not ``3000.0``)
INTEGER_COLUMNS = ["seed", "n_entities", "n_train", "n_test", "n_sensors", "n_inputs", "n_scored", "n_missing",
                   "epochs_run", "event_tp", "event_fp", "event_fn", "n_detected", "interp_steps", "interp_events",
                   "interp_events_skipped"]


def results_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows → the long result schema: every column present, extras kept at the end, counts
    as (nullable) integers."""
    df = pd.DataFrame(rows)
    for c in RESULT_COLUMNS:
        if c not in df.columns:
            df[c] = np.nan
    extra = [c for c in df.columns if c not in RESULT_COLUMNS]
    df = df[RESULT_COLUMNS + extra]
    for c in INTEGER_COLUMNS:
        if c in df:
            v = pd.to_numeric(df[c], errors="coerce")
            if v.notna().any() and np.all(np.mod(v.dropna(), 1) == 0):
                df[c] = v.round().astype("Int64")
    return df


def write_results(run_dir: Path, rows: list[dict]) -> pd.DataFrame:
    df = results_frame(rows)
    atomic_write(Path(run_dir) / "results.csv", lambda p: df.to_csv(p, index=False))
    return df


#: identifiers read back as text whatever they look like: pandas reads a ``run_id`` whose 12
#: hex digits happen to be decimal ones (0.35% of them) as an integer, a ``config_hash`` such
#: as ``1234e5678901`` as a float, and a system named ``7`` as a number; then a skipped job's
#: rows (read from the earlier run) no longer equal the run's own
TEXT_COLUMNS = ("run_id", "config_hash", "entity")


def read_results_csv(path) -> pd.DataFrame:
    """A ``results.csv`` or a collected CSV (the same columns), identifiers as text."""
    return pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS})


def read_results(run_dir: Path) -> pd.DataFrame:
    """The run's ``results.csv``, or an empty frame when it has none."""
    path = Path(run_dir) / "results.csv"
    return read_results_csv(path) if path.exists() else pd.DataFrame()


def write_train_log(run_dir: Path, records: list[dict]) -> None:
    df = pd.DataFrame(records, columns=["entity", "epoch", "train_loss", "val_loss", "seconds"]) if not records \
        else pd.DataFrame(records)
    atomic_write(Path(run_dir) / "train_log.csv", lambda p: df.to_csv(p, index=False))


def read_train_log(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "train_log.csv"
    if not path.exists():
        return []
    try:
        return pd.read_csv(path, dtype={"entity": str}).to_dict("records")   # "007" stays "007" (TEXT_COLUMNS)
    except pd.errors.EmptyDataError:
        return []


ANOMALY_COLUMNS = ["entity", "start", "end", "score", "top_sensors"]


def write_anomalies(run_dir: Path, anomalies: list[dict]) -> None:
    frame = pd.DataFrame(anomalies, columns=ANOMALY_COLUMNS)
    atomic_write(Path(run_dir) / "anomalies.csv", lambda p: frame.to_csv(p, index=False))


# -- config.yaml -----------------------------------------------------------------------------------
def write_config(run_dir: Path, cfg: DictConfig) -> None:
    atomic_write(Path(run_dir) / "config.yaml", lambda p: OmegaConf.save(cfg, p, resolve=False))


def read_config(run_dir: Path) -> DictConfig:
    """A run dir's ``config.yaml``, migrated to the keys this madbench reads."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise DataError(f"{path}: missing; expected a madbench run dir")
    return migrate_config(OmegaConf.load(path))


def migrate_config(cfg: DictConfig) -> DictConfig:
    """A saved config with the keys added since it was written, at the values that give
    what the old code computed (a copy; unchanged keys are left as they are)."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(cfg):
        if "attribution" not in cfg:
            cfg.attribution = "auto"
        head = cfg.get("head")
        if head is not None and "score" not in head:
            # which part of the score is final became a key; before it, a head's factor always
            # multiplied the objective's score
            head.score = "backbone" if head.get("name", "none") == "none" else "product"
        m2ad = OmegaConf.select(cfg, "protocol.m2ad", default=None)
        if m2ad is not None and "grouping" not in m2ad:
            # interval grouping became a key; before it, flags were always padded and merged
            m2ad.grouping = "padding"
            m2ad.bridge = 360
        for node in (cfg.get("protocol") or {}).values():
            if node is not None and "window" in node:
                # the range metrics' sliding window was called `window`, like the model's
                node.range_window = node.pop("window")
        if m2ad is not None and any(k in m2ad for k in ("alpha", "calibration", "level")):
            # calibration moved from the m2ad protocol into the scoring stage: a raw score was
            # calibrated there (pot by default) at p < alpha (0.001 when null); an alpha given
            # to the protocol overrode the scorer's
            alpha, calibration, level = m2ad.pop("alpha", None), m2ad.pop("calibration", "pot"), m2ad.pop("level", 0.98)
            scoring = cfg.scoring
            if scoring.get("name") == "raw":
                scoring.calibration = calibration
                scoring.alpha = 0.001 if alpha is None else alpha
                scoring.pot_level = level
            elif alpha is not None and "alpha" in scoring:
                scoring.alpha = alpha
        if "score_train" not in cfg:
            # before the key, a job scored its whole train split
            cfg.score_train = "all"
    return cfg


# -- scores.npz ------------------------------------------------------------------------------------
@dataclass
class StoredEntity:
    """One entity of a run dir: the score stage's output on both splits, what the scoring
    stage made of it, and what the protocols and the attribution metrics need besides."""

    name: str
    labels: np.ndarray            # [T] int8 test labels
    sensors: list[str]            # the modelled columns (the residuals' axis)
    val_mask: np.ndarray          # [T_train] bool: validation steps
    train: SeriesScores           # the score stage on the train split
    test: SeriesScores            # ... on the test split (window scores only here)
    score: np.ndarray             # [T] the scoring stage's final test score
    train_score: np.ndarray       # [T_train] ... on train
    p: np.ndarray | None = None         # [T] calibrated p-values (calibrated scorers)
    flags: np.ndarray | None = None     # [T] the scorer's own alarms
    sensor_p: np.ndarray | None = None  # [T, S] per-sensor p-values
    status: str = "ok"
    groups: dict | None = None    # sensor groups (M2AD weights)
    extras: dict = field(default_factory=dict)  # ground-truth sensors + attribution (madbench.attribution)

    def entity_scores(self, window: int) -> EntityScores:
        """What a protocol takes (``window`` is the model window)."""
        return EntityScores(name=self.name, labels=self.labels, score=self.score, train_score=self.train_score,
                            val_mask=self.val_mask, window_score=self.test.window, window_start=self.test.window_start,
                            window=window, window_offsets=self.test.offsets, p=self.p, flags=self.flags,
                            status=self.status, extras=dict(self.extras))


@dataclass
class StoredScores:
    """A run dir's ``scores.npz``: its entities, the model window and the config_hash."""

    entities: list[StoredEntity]
    window: int
    config_hash: str = ""
    version: int = SCORES_VERSION
    #: how much of the train split was scored: ``all``, ``validation`` or ``none`` (the
    #: train arrays are NaN where not scored; madbench.train_scores)
    train_scored: str = "all"

    def entity_scores(self) -> list[EntityScores]:
        return [e.entity_scores(self.window) for e in self.entities]


def _split_arrays(prefix: str, s: SeriesScores, window: bool) -> dict[str, np.ndarray]:
    out = {} if s.step is None else {prefix + "step": np.asarray(s.step)}
    if s.residuals is not None:
        # float32: both splits' residuals, so the scoring stage can be re-run without training
        out[prefix + "residuals"] = np.asarray(s.residuals, dtype=np.float32)
    if window:
        out[prefix + "window"] = np.asarray(s.window)
        out[prefix + "window_start"] = np.asarray(s.window_start)
    if s.factor is not None:
        out[prefix + "factor"] = np.asarray(s.factor)
    if s.score_mode is not None:
        out[prefix + "score_mode"] = np.array(s.score_mode)
    # every part of the score, placed on its own: head.score can pick another one later
    out.update({f"{prefix}part/{n}": np.asarray(v) for n, v in (s.components or {}).items()})
    if window:
        out.update({f"{prefix}window_part/{n}": np.asarray(v) for n, v in (s.window_components or {}).items()})
    return out


def _split(a: dict, prefix: str, window: bool, offsets) -> SeriesScores:
    def parts(kind):
        p = prefix + kind + "/"
        found = {k[len(p):]: v for k, v in a.items() if k.startswith(p)}
        return found or None

    mode = a.get(prefix + "score_mode")
    empty = np.zeros(0)
    return SeriesScores(
        step=a.get(prefix + "step"), residuals=_f64(a.get(prefix + "residuals")),
        window=a.get(prefix + "window", empty) if window else empty,
        window_start=a.get(prefix + "window_start", empty.astype(np.int64)) if window else empty.astype(np.int64),
        factor=a.get(prefix + "factor"), offsets=offsets if window else None, components=parts("part"),
        window_components=parts("window_part") if window else None,
        score_mode=None if mode is None else str(mode))


def scores_arrays(stored: StoredScores) -> dict[str, np.ndarray]:
    """The arrays of ``scores.npz`` (``__meta__`` included) for ``stored``."""
    from madbench.attribution import to_arrays

    offsets = next((e.test.offsets for e in stored.entities if e.test.offsets is not None), None)
    meta = {"format": SCORES_FORMAT, "version": SCORES_VERSION, "entities": [e.name for e in stored.entities],
            "window": int(stored.window), "config_hash": stored.config_hash,
            "groups": {e.name: e.groups for e in stored.entities if e.groups},
            "train_scored": stored.train_scored}
    if offsets is not None:
        meta["score_offsets"] = [int(o) for o in offsets]
    a = {"__meta__": np.array(json.dumps(meta))}
    for i, e in enumerate(stored.entities):
        k = f"e{i}/"
        a[k + "labels"] = np.asarray(e.labels)
        a[k + "sensors"] = np.array([str(s) for s in e.sensors])
        a[k + "val_mask"] = np.asarray(e.val_mask, dtype=bool)
        a[k + "status"] = np.array(e.status)
        a[k + "score"] = np.asarray(e.score)
        a[k + "train_score"] = np.asarray(e.train_score)
        for name, v in (("p", e.p), ("flags", e.flags)):
            if v is not None:
                a[k + name] = np.asarray(v)
        if e.sensor_p is not None:
            a[k + "sensor_p"] = np.asarray(e.sensor_p, dtype=np.float32)
        a.update(_split_arrays(k + "test/", e.test, window=True))
        a.update(_split_arrays(k + "train/", e.train, window=True))
        a.update({k + "attribution/" + n: v for n, v in to_arrays(e.extras).items()})
    return a


def write_scores(run_dir: Path, stored: StoredScores) -> None:
    arrays = scores_arrays(stored)

    def _w(tmp):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    atomic_write(Path(run_dir) / "scores.npz", _w)


def _load(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    if not path.exists():
        raise DataError(f"{path}: missing; expected the scores.npz a completed run writes")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("__meta__")))
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{path}: not a readable scores.npz ({e})") from None
    return meta, arrays


def _from_v1(meta: dict, a: dict[str, np.ndarray]) -> tuple[dict, dict[str, np.ndarray]]:
    """Version 1 (``<entity>__<field>``, no version in the meta) → version 2. Fields a v1
    file may lack are left out here and read as their defaults: ``status`` (before it was
    kept: ``ok``), ``train_step`` (before re-scoring raw scores: absent, so only a residual
    scorer can re-score it), ``score_offsets`` (before they were kept: unknown, the
    madcluster protocol then says so). Version 1 kept no score parts, only the final step
    score (the objective's score times a head's factor, ``head_factor``, where a head was
    on): that is the one part it has, ``product`` with a head and ``backbone`` without."""
    out = {}
    rename = {"step": "test/step", "residuals": "test/residuals", "window_score": "test/window",
              "window_start": "test/window_start", "head_factor": "test/factor", "train_step": "train/step",
              "train_residuals": "train/residuals", "train_head_factor": "train/factor"}
    from madbench.attribution import ARRAYS

    for i, name in enumerate(meta["entities"]):
        k = f"{name}__"
        for key, v in a.items():
            if not key.startswith(k):
                continue
            f = key[len(k):]
            if f in ARRAYS or f == "attribution_kind":
                f = "attribution/" + f
            out[f"e{i}/" + rename.get(f, f)] = v
        mode = "product" if k + "head_factor" in a else "backbone"
        for split in ("test", "train"):
            step = out.get(f"e{i}/{split}/step")
            if step is None:
                continue
            out[f"e{i}/{split}/score_mode"] = np.array(mode)
            out[f"e{i}/{split}/part/{mode}"] = step
            if f"e{i}/{split}/factor" in out:
                out[f"e{i}/{split}/part/head"] = out[f"e{i}/{split}/factor"]
        out[f"e{i}/test/window_part/{mode}"] = out[f"e{i}/test/window"]
    meta = dict(meta, format=SCORES_FORMAT, version=2)
    return meta, out


def _from_v2(meta: dict, a: dict[str, np.ndarray]) -> tuple[dict, dict[str, np.ndarray]]:
    """Version 2 → 3: every run before version 3 scored its whole train split."""
    return dict(meta, train_scored="all", version=3), a


#: version → the function that upgrades a (meta, arrays) pair of that version by one step
MIGRATIONS = {1: _from_v1, 2: _from_v2}


def _f64(a: np.ndarray | None) -> np.ndarray | None:
    # residuals are kept as float32; the scoring stage computes in float64, as in a job
    return None if a is None else a.astype(np.float64)


def read_scores(run_dir: Path) -> StoredScores:
    """A run dir's ``scores.npz`` (any version), as :class:`StoredScores`."""
    from madbench.attribution import from_arrays

    path = Path(run_dir) / "scores.npz"
    meta, a = _load(path)
    version = int(meta.get("version", 1))
    if version > SCORES_VERSION:
        raise DataError(f"{path}: scores format version {version}; this madbench reads up to {SCORES_VERSION} "
                        "(upgrade madbench)")
    while version < SCORES_VERSION:
        meta, a = MIGRATIONS[version](meta, a)
        version = int(meta["version"])
    offsets = meta.get("score_offsets")
    offsets = None if offsets is None else np.asarray(offsets, dtype=np.int64)
    entities = []
    for i, name in enumerate(meta["entities"]):
        k = f"e{i}/"

        def get(f, k=k):
            return a.get(k + f)

        extras = from_arrays({key[len(k + "attribution/"):]: v for key, v in a.items()
                              if key.startswith(k + "attribution/")})
        entities.append(StoredEntity(
            name=name, labels=get("labels"), sensors=[str(s) for s in get("sensors")],
            val_mask=get("val_mask").astype(bool),
            train=_split(a, k + "train/", window=True, offsets=offsets),
            test=_split(a, k + "test/", window=True, offsets=offsets),
            score=get("score"), train_score=get("train_score"), p=get("p"), flags=get("flags"),
            sensor_p=get("sensor_p"), status=str(get("status")) if get("status") is not None else "ok",
            groups=(meta.get("groups") or {}).get(name), extras=extras))
    return StoredScores(entities=entities, window=int(meta["window"]), config_hash=meta.get("config_hash", ""),
                        version=SCORES_VERSION, train_scored=str(meta["train_scored"]))


def read_train_scored(run_dir: Path) -> str:
    """How much of its train split a run dir's ``scores.npz`` holds scores for (``all``,
    ``validation`` or ``none``; files before version 3 scored all of it)."""
    path = Path(run_dir) / "scores.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"])) if "__meta__" in z.files else {}
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable scores.npz ({e})") from None
    return str(meta.get("train_scored", "all"))


# -- model.pt ---------------------------------------------------------------------------------------
CHECKPOINT_FORMAT = "madbench.model"
#: 1: the trained models, per entity its scaler and train-split scores (``Checkpoint``)
CHECKPOINT_VERSION = 1
CHECKPOINT_FILE = "model.pt"


@dataclass
class StoredFit:
    """What one entity needs after training to be scored as it was: its input scaling
    (``madbench.data.preprocess.Preprocessor.state``) and its train-split scores, on which
    the scoring stage is fitted again when loaded (the same data, so the same scorer)."""

    name: str
    columns: list[str]
    sensors: list[str]
    covariates: list[str]
    groups: dict | None
    scaler: dict
    val_mask: np.ndarray    # [T_train] bool
    train: SeriesScores     # the score stage on the train split (NaN where not scored)


@dataclass
class StoredModel:
    """One trained model (one entity's, or a pooled group's): its ``state_dict``, its
    input and sensor columns, its per-epoch history and timings, and its entities."""

    state_dict: dict
    n_inputs: int
    n_sensors: int
    input_idx: np.ndarray
    sensor_idx: np.ndarray
    history: list[dict]
    fit_seconds: float
    train_score_seconds: float
    entities: list[StoredFit]


@dataclass
class Checkpoint:
    """A run dir's ``model.pt``: every trained model of a fitted ``madbench.Detector`` and
    the config_hash of the ``config.yaml`` beside it."""

    models: list[StoredModel]
    config_hash: str
    version: int = CHECKPOINT_VERSION


def _encode(v):
    """numpy → tensors and plain Python, the types ``torch.load(weights_only=True)`` reads."""
    import torch

    if isinstance(v, np.ndarray):
        if v.dtype.kind in "US":
            return v.tolist()
        return torch.from_numpy(np.ascontiguousarray(v))
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {str(k): _encode(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_encode(x) for x in v]
    return v


def _decode(v):
    import torch

    if isinstance(v, torch.Tensor):
        return v.numpy()
    if isinstance(v, dict):
        return {k: _decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode(x) for x in v]
    return v


def _fit_arrays(s: SeriesScores) -> dict[str, np.ndarray]:
    a = _split_arrays("", s, window=True)
    if s.residuals is not None:
        # float64 as scored (scores.npz keeps float32): the scoring stage is fitted again on
        # exactly the values it was fitted on, so a loaded detector scores identically
        a["residuals"] = np.asarray(s.residuals, dtype=np.float64)
    return a


def write_checkpoint(run_dir: Path, ckpt: Checkpoint) -> None:
    import torch

    models = []
    for m in ckpt.models:
        ents = [{"name": e.name, "columns": list(e.columns), "sensors": list(e.sensors),
                 "covariates": list(e.covariates), "groups": _encode(e.groups), "scaler": _encode(e.scaler),
                 "val_mask": _encode(np.asarray(e.val_mask, dtype=bool)),
                 "train": _encode(_fit_arrays(e.train)),
                 "offsets": None if e.train.offsets is None else _encode(np.asarray(e.train.offsets))}
                for e in m.entities]
        models.append({"state_dict": {k: t.detach().cpu() for k, t in m.state_dict.items()},
                       "n_inputs": int(m.n_inputs), "n_sensors": int(m.n_sensors),
                       "input_idx": _encode(np.asarray(m.input_idx, dtype=np.int64)),
                       "sensor_idx": _encode(np.asarray(m.sensor_idx, dtype=np.int64)),
                       "history": _encode(m.history), "fit_seconds": float(m.fit_seconds),
                       "train_score_seconds": float(m.train_score_seconds), "entities": ents})
    blob = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config_hash": ckpt.config_hash, "models": models}
    atomic_write(Path(run_dir) / CHECKPOINT_FILE, lambda p: torch.save(blob, p))


def read_checkpoint(run_dir: Path) -> Checkpoint:
    """A run dir's ``model.pt`` (tensors and plain values only: ``weights_only``)."""
    import pickle

    import torch

    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        raise DataError(f"{path}: missing; expected the {CHECKPOINT_FILE} that madbench.Detector.save writes")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError) as e:
        raise DataError(f"{path}: not a readable {CHECKPOINT_FILE} ({str(e).splitlines()[0] if str(e) else e})") \
            from None
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{path}: not a madbench model checkpoint")
    if int(blob["version"]) > CHECKPOINT_VERSION:
        raise DataError(f"{path}: checkpoint version {blob['version']}; this madbench reads up to "
                        f"{CHECKPOINT_VERSION} (upgrade madbench)")
    models = []
    for m in blob["models"]:
        ents = []
        for e in m["entities"]:
            offsets = _decode(e["offsets"])
            ents.append(StoredFit(name=e["name"], columns=list(e["columns"]), sensors=list(e["sensors"]),
                                  covariates=list(e["covariates"]), groups=_decode(e["groups"]),
                                  scaler=_decode(e["scaler"]), val_mask=_decode(e["val_mask"]).astype(bool),
                                  train=_split({k: _scalar_str(v) for k, v in _decode(e["train"]).items()}, "",
                                               window=True, offsets=offsets)))
        models.append(StoredModel(state_dict=m["state_dict"], n_inputs=m["n_inputs"], n_sensors=m["n_sensors"],
                                  input_idx=_decode(m["input_idx"]), sensor_idx=_decode(m["sensor_idx"]),
                                  history=_decode(m["history"]), fit_seconds=m["fit_seconds"],
                                  train_score_seconds=m["train_score_seconds"], entities=ents))
    return Checkpoint(models=models, config_hash=blob["config_hash"],
                      version=int(blob["version"]))


def _scalar_str(v):
    # ``score_mode`` is kept as a 0-d string array in scores.npz, as a str here
    return np.array(v) if isinstance(v, str) else v
