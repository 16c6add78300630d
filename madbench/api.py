"""madbench as a library: any backbone, objective, head and scoring as an estimator on arrays.

    import madbench
    det = madbench.Detector("lstm", scoring="m2ad", trainer={"epochs": 3})
    det.fit(train)                    # float[T, D], or a list of them (one model each)
    s = det.score(test)               # Scores: .score [T] (NaN where unscored), .residuals, .p
    det.predict(test)                 # the strict protocol's alarms, bool [T]
    det.evaluate(test, labels)        # the rows results.csv holds, as a DataFrame
    det.save("my_run"); madbench.Detector.load("my_run").score(test)

The detector is built from the same config groups as the CLI (``configs/``), and the CLI's
job (``madbench.run.Job``) trains, scores and evaluates through this class: a job's rows
and the rows of ``evaluate`` on the same data, config and seed are equal.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from madbench import attribution, rundir, train_scores
from madbench import protocols as P
from madbench.checks import validate
from madbench.config import CONFIG_DIR, build, check_keys, config_hash
from madbench.data.entity import Entity
from madbench.data.preprocess import Preprocessor
from madbench.data.windows import Windows, WindowSpec
from madbench.detector import build_detector, build_objective
from madbench.errors import ConfigError, DataError
from madbench.results import EntityScoring, RunResults
from madbench.scoring.base import SeriesScores


log = logging.getLogger("madbench")

#: parameters that choose a config group's option (a str) or set keys inside it (a dict)
GROUPS = ("backbone", "objective", "head", "scoring", "dataset", "trainer", "arm", "pipeline", "experiment", "debug")
#: parameters that are plain top-level keys
PLAIN = ("seed", "attribution", "score_train")


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed every generator. ``deterministic`` (``trainer.deterministic``; by default on for
    CPU runs) makes the same seed give identical scores; on CUDA it is off by default
    because it slows cuDNN down."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def record_device_type(cfg: DictConfig) -> None:
    """Set ``cfg.device_type`` to the type of device the job trains on (``trainer.device``
    resolved, ``auto`` included: cpu, cuda or mps). config_hash keeps it: determinism is
    on only on CPU (``seed_everything``), so a CPU and a CUDA result are not the same
    result. Which CUDA device (cuda:0 or cuda:1), and whether it was asked for as ``auto``,
    does not change the hash. An unusable device is left to ``validate``, which fails the
    job with its failed rows."""
    from madbench.fit import resolve_device

    try:
        dev = resolve_device(OmegaConf.select(cfg, "trainer.device", default="auto") or "auto")
    except ConfigError:
        return
    with open_dict(cfg):
        cfg.device_type = dev.type


def group_entities(entities: list[Entity], pooled: bool) -> list[list[Entity]]:
    """The entities each model trains on: one each, or all of them (``dataset.pooled``)."""
    if not pooled:
        return [[e] for e in entities]
    first = entities[0]
    for e in entities[1:]:
        if e.sensors != first.sensors or e.covariates != first.covariates:
            raise ConfigError(f"dataset.pooled=true needs the same sensors and covariates in every entity; "
                              f"{e.name} differs from {first.name}")
    return [entities]


# -- composing a config from keywords -----------------------------------------------------------
def options(group: str) -> list[str]:
    """The options of a config group (``configs/<group>/*.yaml``)."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _check_option(group: str, name) -> str:
    if not isinstance(name, str) or not name or "/" in name or not (CONFIG_DIR / group / f"{name}.yaml").is_file():
        raise ConfigError(f"{group}={name!r}: unknown; expected one of {', '.join(options(group))}")
    return name


def _choice(key: str, value) -> tuple[str | None, dict]:
    """A group parameter → (option name or None, keys to set inside it)."""
    if isinstance(value, str):
        return _check_option(key, value), {}
    if isinstance(value, Mapping):
        rest = dict(value)
        name = rest.pop("name", None)
        return (None if name is None else _check_option(key, name)), rest
    raise ConfigError(f"{key}={value!r}: expected an option name (str) or a dict of its keys")


def _protocols(value) -> dict[str, dict]:
    """``protocol`` → {name: keys to set}: a name, a list of names, or {name: {key: value}}."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Mapping):
        out = {name: dict(keys or {}) for name, keys in value.items()}
    elif isinstance(value, (list, tuple)) and value:
        out = {name: {} for name in value}
    else:
        raise ConfigError(f"protocol={value!r}: expected a protocol name, a list of them, or {{name: {{key: value}}}}")
    for name in out:
        _check_option("protocol", name)
    return out


def compose(overrides: list[str]) -> DictConfig:
    """``configs/config.yaml`` composed with Hydra command-line overrides, as the CLI
    composes it (``compose(["backbone=usad", "trainer.epochs=3"])``; a bad override is a
    one-line ConfigError). ``Detector.from_config(compose([...]))`` is that job's detector."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    # inside a Hydra app (or another initialize) the global instance is set: set it aside
    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            try:
                return compose("config", overrides=overrides)
            except Exception as e:  # Hydra's messages run over several lines
                raise ConfigError(f"{' '.join(overrides)}: {str(e).splitlines()[0]}") from None
    finally:
        restore_gh_from_backup(backup)


def _set(cfg: DictConfig, key: str, value) -> None:
    """Set the dotted ``key`` of ``cfg`` (a dict value is set key by key inside an existing
    group of keys). A key the config does not have is refused with one line naming it,
    unless its node builds a class that takes it (``scoring={"random_state": 1}``)."""
    parent, _, leaf = key.rpartition(".")
    node = cfg if not parent else OmegaConf.select(cfg, parent, throw_on_resolution_failure=False)
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{key}: {parent} is not a group of keys")
    if leaf not in node:
        target = node.get("_target_") if "_target_" in node else None
        if target is None:
            raise ConfigError(f"{key}: unknown key; expected one of {', '.join(str(k) for k in node)}")
        from hydra.utils import get_object

        check_keys(get_object(str(target)), {leaf: value}, parent)
    try:
        child = node[leaf] if leaf in node else None
    except Exception:  # an interpolation that does not resolve yet
        child = None
    if isinstance(value, Mapping) and isinstance(child, DictConfig):
        for k, v in value.items():
            _set(cfg, f"{key}.{k}", v)
        return
    with open_dict(node):
        node[leaf] = value


def with_protocols(cfg: DictConfig, protocols) -> DictConfig:
    """A copy of ``cfg`` whose ``protocol`` holds exactly ``protocols`` (a name, a list, or
    {name: {key: value}}): a protocol the config has keeps its keys, another one comes with
    its defaults (``configs/protocol/<name>.yaml``)."""
    wanted = _protocols(protocols)
    cfg = copy.deepcopy(cfg)
    nodes = {}
    for name in wanted:
        if name in (cfg.get("protocol") or {}):
            nodes[name] = OmegaConf.to_container(cfg.protocol[name], resolve=False)
        else:
            nodes[name] = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "protocol" / f"{name}.yaml"), resolve=False)
    with open_dict(cfg):
        cfg.protocol = nodes
    for name, keys in wanted.items():
        for k, v in keys.items():
            _set(cfg, f"protocol.{name}.{k}", v)
    return cfg


# -- input arrays ---------------------------------------------------------------------------------
def _array(x, where: str) -> tuple[np.ndarray, list[str] | None]:
    """``x`` as float32 [T, D] (a DataFrame's columns become its sensor names)."""
    names = [str(c) for c in x.columns] if isinstance(x, pd.DataFrame) else None
    try:
        a = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError):
        raise DataError(f"{where}: expected numbers, a float array [T, D]; got {type(x).__name__}") from None
    if a.ndim != 2 or a.shape[1] == 0:
        hint = " (one sensor: x.reshape(-1, 1))" if a.ndim == 1 else ""
        raise DataError(f"{where}: expected a float array [T, D] (rows are time steps, columns sensors) or a list "
                        f"of them; got shape {a.shape}{hint}")
    bad = ~np.isfinite(a)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"{where}: {int(bad.sum())} value(s) are NaN or infinite, the first at row {r}, column {c}; "
                        "expected finite values (impute them first, e.g. with the train means as madbench's "
                        "dataset loaders do)")
    return a, names


def _as_list(X, arg: str) -> tuple[list, bool]:
    """(items, whether ``X`` was one series)."""
    if isinstance(X, (Entity, np.ndarray, pd.DataFrame)):
        return [X], True
    if isinstance(X, (list, tuple)) and X:
        return list(X), False
    raise DataError(f"{arg}: expected a float array [T, D], a list of them, or madbench Entity objects; got "
                    f"{type(X).__name__}{' (empty)' if isinstance(X, (list, tuple)) else ''}")


def _where(arg: str, i: int, single: bool) -> str:
    return arg if single else f"{arg}[{i}]"


@dataclass
class Scores:
    """The scores of one series (``Detector.score``). Every array is aligned to the rows of
    the series and NaN where no window scores a step (a forecaster's first window), never 0.
    ``np.asarray(scores)`` is ``scores.score``.

    - ``score`` [T]: the final anomaly score, higher = more anomalous (the scoring stage's:
      the objective's step score with ``scoring=raw``, M2AD's Fisher statistic with ``m2ad``);
    - ``p`` [T]: calibrated p-values (``scoring=m2ad``), else None;
    - ``flags`` [T]: the scorer's own alarms (``m2ad``: p < alpha; ``dynamic_threshold``,
      ``percentile_threshold``: the detected intervals), else None;
    - ``sensor_p`` [T, S]: per-sensor p-values (``scoring=m2ad``), else None;
    - ``residuals`` [T, S]: the per-sensor residuals y − ŷ, where the objective has them;
    - ``step`` [T]: the score stage's step score, before the scoring stage;
    - ``status``: ``ok``, or ``uncalibrated`` (the train score has zero variance: nothing flagged);
    - ``sensors``: the names of the S modelled columns; ``name``: the series';
    - ``series``: the score stage's whole output (window scores, every part of the score).
    """

    name: str
    score: np.ndarray
    p: np.ndarray | None
    flags: np.ndarray | None
    sensor_p: np.ndarray | None
    residuals: np.ndarray | None
    step: np.ndarray
    status: str
    sensors: list[str]
    series: SeriesScores

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.score, dtype=dtype)

    def __len__(self) -> int:
        return len(self.score)


class Fitted:
    """One trained model (an entity's, or a pooled group's) and, per entity, what scoring
    needs after it: the input scaling, the validation steps and the fitted scoring stage."""

    def __init__(self, det: "Detector", model, entities: list[dict], input_idx, sensor_idx, history: list[dict],
                 fit_seconds: float, train_score_seconds: float):
        self.det, self.model = det, model
        #: per entity: name, columns, sensors, covariates, groups, n_train, prep, val_mask, scoring
        self.entities = entities
        self.input_idx, self.sensor_idx = np.asarray(input_idx), np.asarray(sensor_idx)
        self.history, self.fit_seconds, self.train_score_seconds = history, fit_seconds, train_score_seconds

    @property
    def names(self) -> list[str]:
        return [e["name"] for e in self.entities]

    def score_stage(self, tests: list[np.ndarray], where: list[str], desc: str) -> tuple[list[SeriesScores], Windows]:
        """The score stage on the entities' test arrays (raw values: scaled here as their
        train was): their SeriesScores, and the Windows they were scored on."""
        det = self.det
        xs = [e["prep"].transform(x, is_test=True) for e, x in zip(self.entities, tests)]
        for x, w in zip(xs, where):
            det._check_rows(w, "test", len(x))
        windows = Windows(xs, det.score_spec_, device=det.trainer_.device)
        return det.trainer_.score(self.model, windows, self.input_idx, self.sensor_idx, desc=desc), windows


class Detector(BaseEstimator):
    """A madbench detector (backbone + objective + heads, trained, then the scoring stage)
    as a scikit-learn style estimator on time series.

    ``madbench.Detector("anomaly_transformer", head="madcluster", scoring="m2ad",
    trainer={"epochs": 3})`` is the job ``madbench backbone=anomaly_transformer
    head=madcluster scoring=m2ad trainer.epochs=3``, on your arrays.

    Parameters are the top-level keys of madbench's config (``madbench --help`` lists the
    groups and their options), with the values you would give on the command line:

    - a string chooses a group's option: ``head="madcluster"`` (``head=madcluster``);
    - a dict sets keys inside the group: ``trainer={"epochs": 3}`` (``trainer.epochs=3``),
      ``dataset={"window": 50, "stride": 1}``; with ``name`` it also chooses the option:
      ``head={"name": "madcluster", "k": 2}`` (``head=madcluster head.k=2``);
    - ``protocol``: a name, a list of names, or ``{name: {key: value}}``;
    - ``seed``, ``attribution``, ``score_train``: their value (``score_train="all"`` scores
      every train step, so that ``evaluate``/``predict`` may use any protocol later; the
      default scores only what the configured scoring and protocols read:
      ``madbench.train_scores``).

    None (the default) keeps the config's default: the LSTM forecaster, ``scoring=raw``,
    ``protocol=strict``, the ``dataset`` group's window (100), training stride (5) and
    scaler (min-max, fitted on each series' train). A key the config does not have is
    refused with one line naming it, as the CLI refuses it. ``config`` starts from a
    composed config instead (``Detector.from_config``); keyword dicts are then set on it.

    Series: ``fit(X)`` takes a float array [T, D] (rows are time steps, every column a
    sensor) or a list of them, one model each (``dataset={"pooled": True}``: one model for
    all), or ``madbench.data`` Entity objects (which also name covariates, input-only
    columns, the M2AD sensor groups and the ground-truth sensors of the attribution
    metrics: an array has none, so each of its sensors is its own group). ``score``,
    ``predict`` and ``evaluate`` take the same number of series, in the same order: each is
    scored by the model and the scoring stage fitted on its train.

    After ``fit``: ``config_`` (the composed config), ``models_`` (the trained
    ``torch.nn.Module`` per model), ``history_`` (per-epoch losses, as train_log.csv).
    """

    def __init__(self, backbone=None, *, objective=None, head=None, scoring=None, protocol=None, dataset=None,
                 trainer=None, seed=None, attribution=None, arm=None, pipeline=None,
                 experiment=None, debug=None, score_train=None, config=None):
        self.backbone = backbone
        self.objective = objective
        self.head = head
        self.scoring = scoring
        self.protocol = protocol
        self.dataset = dataset
        self.trainer = trainer
        self.seed = seed
        self.attribution = attribution
        self.arm = arm
        self.pipeline = pipeline
        self.experiment = experiment
        self.debug = debug
        self.score_train = score_train
        self.config = config

    # -- the config ------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: DictConfig) -> "Detector":
        """A detector of a composed config (the CLI's, or ``hydra.compose`` of
        ``madbench.config.CONFIG_DIR``), as it is."""
        return cls(config=cfg)

    def get_config(self) -> DictConfig:
        """The composed config of these parameters, checked as a job checks it (one-line
        ConfigError naming the key otherwise)."""
        params = self.get_params(deep=False)
        if params["config"] is not None:
            cfg = copy.deepcopy(params["config"])
            for key in GROUPS:
                if params[key] is None:
                    continue
                name, keys = _choice(key, params[key])
                have = OmegaConf.select(cfg, f"{key}.name", default=None)
                if name is not None and name != have:
                    raise ConfigError(f"{key}={name!r}: Detector(config=...) keeps the composed config's choice "
                                      f"({key}={have}); compose a new detector with keywords to choose another")
                for k, v in keys.items():
                    _set(cfg, f"{key}.{k}", v)
        else:
            choices, sets = [], []
            for key in GROUPS:
                if params[key] is not None:
                    name, keys = _choice(key, params[key])
                    if name is not None:
                        choices.append(f"{key}={name}")
                    sets += [(f"{key}.{k}", v) for k, v in keys.items()]
            if params["protocol"] is not None:
                wanted = _protocols(params["protocol"])
                choices.append(f"protocol=[{','.join(wanted)}]")
                sets += [(f"protocol.{n}.{k}", v) for n, keys in wanted.items() for k, v in keys.items()]
            cfg = compose(choices)
            for key, value in sets:
                _set(cfg, key, value)
        if params["config"] is not None and params["protocol"] is not None:
            cfg = with_protocols(cfg, params["protocol"])
        for key in PLAIN:
            if params[key] is not None:
                _set(cfg, key, params[key])
        record_device_type(cfg)
        validate(cfg)
        return cfg

    def prepare(self) -> "Detector":
        """Compose and check the config, and build the trainer: what ``fit`` does before
        training (the CLI's job calls it once, then ``fit_group`` per model)."""
        cfg = self.get_config()
        self.config_ = cfg
        self.trainer_ = build(cfg.trainer, "trainer")
        horizon = build_objective(cfg).horizon
        self.spec_ = WindowSpec(window=cfg.dataset.window, stride=cfg.dataset.get("stride", 1), horizon=horizon,
                                gap=int(cfg.dataset.get("forecast_gap", 0)) if horizon else 0)
        self.score_spec_ = WindowSpec(window=self.spec_.window, stride=1, horizon=self.spec_.horizon,
                                      gap=self.spec_.gap)
        self.train_scored_, reasons = train_scores.needed(cfg)
        log.info(train_scores.describe(self.train_scored_, reasons))
        return self

    # -- fit -------------------------------------------------------------------------------------
    def fit(self, X, y=None, *, on_epoch=None) -> "Detector":
        """Train one model per series of ``X`` (float [T, D], a list of them, or Entity
        objects; one model for all with ``dataset.pooled``), score their train split and
        fit the scoring stage on it. ``y`` is ignored
        (unsupervised; sklearn's signature). ``on_epoch(record)`` is called after every
        epoch with the record ``history_`` keeps (``entity``, ``epoch``, ``train_loss``,
        ``val_loss``, ...). Returns ``self``."""
        self.prepare()
        entities = self._entities(X, "X", split="train")
        history: list[dict] = []

        def record(label):
            def cb(rec):
                history.append({"entity": label, **rec})
                if on_epoch is not None:
                    on_epoch(history[-1])
            return cb

        self.fitted_ = []
        for group in group_entities(entities, bool(self.config_.dataset.get("pooled", False))):
            label = group[0].name if len(group) == 1 else f"pooled[{len(group)}]"
            self.fitted_.append(self.fit_group(group, label, on_epoch=record(label)))
        self.history_ = history
        return self

    def new_model(self, entity: Entity):
        """An untrained model (``madbench.detector.Detector``: backbone, objective and heads)
        at the config's sizes for ``entity``'s columns, built after seeding the generators as
        a fit seeds them (``seed``; ``trainer.deterministic``): the model ``fit_group``
        trains. For what drives the training steps itself (a benchmark of single steps)
        or inspects the architecture. After ``prepare()``."""
        seed_everything(int(self.config_.seed), deterministic=self.trainer_.deterministic)
        return build_detector(self.config_, entity.n_inputs, entity.n_sensors, self.spec_.window)

    def fit_group(self, group: list[Entity], desc: str, on_epoch=None) -> Fitted:
        """Train one model on ``group`` (entities with raw values: each is scaled on its own
        train), score its train split and fit each entity's scoring stage on it. The one training path of ``fit`` and the CLI's job."""
        cfg, trainer, spec = self.config_, self.trainer_, self.spec_
        first = group[0]
        model = self.new_model(first)
        for e in group:  # before windowing: a series shorter than one window has none
            self._check_rows(e.meta.get("source", e.name), "train", len(e.train))
            if len(e.test):
                self._check_rows(e.meta.get("source", e.name), "test", len(e.test))
        preps = [Preprocessor(scaler=cfg.dataset.get("scaler", "minmax"),
                              refit_on_test=bool(cfg.dataset.get("refit_scaler_on_test", False))).fit(e.train)
                 for e in group]
        trains = [p.transform(e.train) for p, e in zip(preps, group)]
        inputs, sensors = first.input_idx, first.sensor_idx
        train_w = Windows(trains, spec, device=trainer.device)
        t0 = time.perf_counter()
        history = trainer.fit(model, train_w, inputs, sensors, desc=desc, on_epoch=on_epoch)
        fit_s = time.perf_counter() - t0
        val_start = train_w.val_start(trainer.val_ratio)
        t0 = time.perf_counter()
        # the train split as far as a later stage reads it (madbench.train_scores)
        score_w = train_w.restrided(self.score_spec_)
        if self.train_scored_ != train_scores.ALL:
            # per series, the first step read: the validation start, or past the end (none)
            read_from = val_start if self.train_scored_ == train_scores.VALIDATION else train_w.lengths
            score_w = score_w.covering(read_from)
        tr_scores = trainer.score(model, score_w, inputs, sensors, desc=f"{desc} score train")
        if self.train_scored_ != train_scores.ALL:
            tr_scores = [s.unscored_before(int(f)) for s, f in zip(tr_scores, read_from)]
        train_score_s = time.perf_counter() - t0
        entities = []
        for e, x, p, vs, tr in zip(group, trains, preps, val_start, tr_scores):
            val_mask = np.zeros(len(x), dtype=bool)
            val_mask[vs:] = True
            groups = e.meta.get("groups")
            entities.append({"name": e.name, "columns": list(e.columns), "sensors": list(e.sensors),
                             "covariates": list(e.covariates), "groups": groups, "n_train": len(x), "prep": p,
                             "val_mask": val_mask,
                             "scoring": EntityScoring(cfg, e.name, e.sensors, groups).fit(tr, val_mask)})
        return Fitted(self, model, entities, inputs, sensors, history, fit_s, train_score_s)

    def _check_rows(self, where: str, split: str, n: int) -> None:
        spec = self.spec_
        need = spec.span + 1 if split == "train" else spec.span
        if n < need:
            raise DataError(f"{where}: {split} has {n} rows; expected at least {need} for dataset.window={spec.window} "
                            "(a shorter window, or longer series)")

    # -- score -----------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "fitted_"):
            raise NotFittedError("this Detector is not fitted yet; call fit(X) first")

    def _entities(self, X, arg: str, split: str, labels=None) -> list[Entity]:
        """``X`` (and ``labels``) as entities: arrays are checked (shape, finite values) and,
        for ``split="test"``, matched to the fitted series (their number, columns, names)."""
        items, single = _as_list(X, arg)
        label_items = None
        if labels is not None:
            label_items = [labels] if single and not isinstance(labels, (list, tuple)) else list(labels)
            if len(label_items) != len(items):
                raise DataError(f"labels: {len(label_items)} label arrays for {len(items)} series; expected one each")
        fitted = [e for f in self.fitted_ for e in f.entities] if split == "test" else None
        if fitted is not None and len(items) != len(fitted):
            raise DataError(f"{arg}: {len(items)} series; the detector was fitted on {len(fitted)} (one per fitted "
                            "series, in the order of fit)")
        out = []
        for i, x in enumerate(items):
            where = _where(arg, i, single)
            lw = _where("labels", i, single)
            if isinstance(x, Entity):
                e = x
                if label_items is not None:
                    e = dataclasses.replace(x, labels=self._labels(label_items[i], len(x.test), lw))
            elif fitted is None:
                a, names = _array(x, where)
                cols = names or [f"x{j}" for j in range(a.shape[1])]
                name = "series" if single else f"series{i}"
                e = Entity(name=name, system=name, train=a, test=a[:0], labels=np.zeros(0, np.int8), columns=cols,
                           sensors=cols, meta={"source": where})
            else:
                a, _ = _array(x, where)
                info = fitted[i]
                if a.shape[1] != len(info["columns"]):
                    raise DataError(f"{where}: {a.shape[1]} columns; the detector was fitted on {len(info['columns'])}")
                lab = (self._labels(label_items[i], len(a), lw) if label_items is not None
                       else np.zeros(len(a), np.int8))
                e = Entity(name=info["name"], system=info["name"], train=a[:0], test=a, labels=lab,
                           columns=info["columns"], sensors=info["sensors"], covariates=info["covariates"],
                           meta={"source": where})
            if fitted is not None and e.test.shape[1] != len(fitted[i]["columns"]):
                raise DataError(f"{where}: {e.test.shape[1]} columns; the detector was fitted on "
                                f"{len(fitted[i]['columns'])}")
            out.append(e)
        names = [e.name for e in out]
        if len(set(names)) != len(names):
            raise DataError(f"{arg}: series names repeat ({names}); expected one name per series")
        return out

    @staticmethod
    def _labels(y, n: int, where: str) -> np.ndarray:
        a = np.asarray(y)
        if a.ndim != 1 or len(a) != n:
            raise DataError(f"{where}: shape {a.shape}; expected {n} labels (one per test row, 0 or 1)")
        if not np.isin(a, (0, 1)).all():
            raise DataError(f"{where}: expected 0 or 1 per test row")
        return a.astype(np.int8)

    def _groups(self, entities: list[Entity]):
        """(Fitted, its entities) pairs, in order."""
        k = 0
        for f in self.fitted_:
            yield f, entities[k:k + len(f.entities)]
            k += len(f.entities)

    def score(self, X) -> Scores | list[Scores]:
        """Score the series of ``X`` (float [T, D] or a list, as ``fit`` got them; Entity
        objects: their ``test``): one :class:`Scores` per series (a list for a list)."""
        self._check_fitted()
        entities = self._entities(X, "X", split="test")
        out = []
        for fitted, group in self._groups(entities):
            te, _ = fitted.score_stage([e.test for e in group], [e.meta.get("source", e.name) for e in group],
                                       desc=f"{fitted.names[0]} score")
            for info, series in zip(fitted.entities, te):
                final, s = info["scoring"].transform(series)
                out.append(Scores(name=info["name"], score=s.score, p=s.p, flags=s.flags, sensor_p=s.sensor_p,
                                  residuals=final.residuals, step=final.step, status=s.status,
                                  sensors=info["sensors"], series=final))
        return out[0] if not isinstance(X, (list, tuple)) else out

    def decision_function(self, X) -> np.ndarray | list[np.ndarray]:
        """The final anomaly score [T] per series (higher = more anomalous; NaN where
        unscored): ``score(X).score``."""
        s = self.score(X)
        return [x.score for x in s] if isinstance(s, list) else s.score

    # -- protocols -------------------------------------------------------------------------------
    def _protocol_config(self, protocols) -> DictConfig:
        cfg = self.config_ if protocols is None else with_protocols(self.config_, protocols)
        from madbench.checks import validate_after_score

        validate_after_score(cfg)
        train_scores.check_stored(self.train_scored_, cfg, "this detector's fit")
        return cfg

    def score_into(self, results: RunResults, fitted: Fitted, group: list[Entity], desc: str) -> float:
        """Score ``group``'s test splits with ``fitted`` and hand each entity to ``results``
        (the scoring stage, then what the protocols and scores.npz need, with the gradient
        attribution where the config asks for it). Returns the scoring seconds (train and
        test). The one evaluation path of ``evaluate`` and the CLI's job."""
        cfg = results.cfg
        t0 = time.perf_counter()
        te, test_w = fitted.score_stage([e.test for e in group], [e.meta.get("source", e.name) for e in group], desc)
        score_s = fitted.train_score_seconds + time.perf_counter() - t0
        # the gradient attribution needs the trained model: here, while it is held
        t0 = time.perf_counter()
        grads = attribution.gradients(cfg, fitted.model, self.trainer_, test_w, fitted.input_idx, fitted.sensor_idx,
                                      group)
        attribution_s = time.perf_counter() - t0
        n = len(group)
        for e, info, series, grad in zip(group, fitted.entities, te, grads):
            sizes = {"n_train": info["n_train"], "n_test": len(e.test), "n_sensors": e.n_sensors,
                     "n_inputs": e.n_inputs, "epochs_run": len(fitted.history),
                     "trained": bool(fitted.history) or not fitted.model.trains_by_gradient,
                     "fit_seconds": fitted.fit_seconds / n,
                     "score_seconds": score_s / n}
            if grad is not None:
                sizes["attribution_seconds"] = attribution_s / n
            results.add_scored(e.name, e.labels, info["scoring"], series, info["val_mask"], self.spec_.window, sizes,
                               interpretation=attribution.truth(e), gradient=grad)
        return score_s

    def evaluate(self, X, labels=None, protocols=None) -> pd.DataFrame:
        """The result rows of ``protocols`` (default: the configured ones; a name, a list,
        or {name: {key: value}}) on the series of ``X`` with their point ``labels`` (0/1
        per row; Entity objects carry theirs): the rows ``results.csv`` holds, one per
        series × protocol plus the ``ALL`` rows, with the same columns."""
        self._check_fitted()
        t0 = time.perf_counter()
        cfg = self._protocol_config(protocols)
        items, _ = _as_list(X, "X")
        if labels is None and not all(isinstance(x, Entity) for x in items):
            raise DataError("labels: missing; evaluate(X, labels) needs 0/1 point labels for each series of X")
        entities = self._entities(X, "X", split="test", labels=labels)
        results = RunResults(cfg, None)
        for fitted, group in self._groups(entities):
            self.score_into(results, fitted, group, desc=f"{fitted.names[0]} score")
        return rundir.results_frame(results.rows(results.evaluate_protocols(), "ok", "", t0))

    def predict(self, X, protocol="strict") -> np.ndarray | list[np.ndarray]:
        """The decision of ``protocol`` (a name or {name: {key: value}}) per test step, bool
        [T] per series (False where unscored): ``strict``, the score above the threshold
        from the validation scores; ``m2ad``, inside a detected interval; ``tslib``, the
        score above its percentile of the train and test scores (before point adjustment).
        ``madcluster`` has none: it picks its threshold on the test labels."""
        self._check_fitted()
        cfg = self._protocol_config(protocol)
        if len(cfg.protocol) != 1:
            raise ConfigError(f"protocol={protocol!r}: expected one protocol, whose decision predict gives")
        (name, pcfg), = cfg.protocol.items()
        proto = P.build(name, OmegaConf.to_container(pcfg, resolve=True))
        if isinstance(proto, P.MADClusterProtocol):
            raise ConfigError("protocol=madcluster picks its threshold by the best F1 on the test labels, so it has "
                              "no decision without them; use evaluate(X, labels, protocols=['madcluster'])")
        entities = self._entities(X, "X", split="test")
        results = RunResults(cfg, None)
        for fitted, group in self._groups(entities):
            self.score_into(results, fitted, group, desc=f"{fitted.names[0]} score")
        out = [decide(proto, es, cfg.dataset.get("anomaly_ratio")) for es in results.entity_scores]
        return out[0] if not isinstance(X, (list, tuple)) else out

    # -- save / load -----------------------------------------------------------------------------
    @property
    def models_(self) -> list:
        """The trained models (``madbench.detector.Detector`` modules), one per fitted model."""
        self._check_fitted()
        return [f.model for f in self.fitted_]

    def save(self, path) -> Path:
        """Write the fitted detector as a run dir ``path`` (created): ``config.yaml`` and
        ``model.pt`` (``madbench.rundir``). ``Detector.load(path)`` scores identically."""
        self._check_fitted()
        path = Path(path)
        models = []
        for f in self.fitted_:
            ents = [rundir.StoredFit(name=e["name"], columns=e["columns"], sensors=e["sensors"],
                                     covariates=e["covariates"], groups=e["groups"], scaler=e["prep"].state(),
                                     val_mask=e["val_mask"], train=e["scoring"].train_) for e in f.entities]
            models.append(rundir.StoredModel(
                state_dict=f.model.state_dict(), n_inputs=len(f.input_idx), n_sensors=len(f.sensor_idx),
                input_idx=f.input_idx, sensor_idx=f.sensor_idx, history=f.history, fit_seconds=f.fit_seconds,
                train_score_seconds=f.train_score_seconds, entities=ents))
        rundir.write_config(path, self.config_)
        rundir.write_checkpoint(path, rundir.Checkpoint(models=models, config_hash=config_hash(self.config_)))
        return path

    @classmethod
    def load(cls, path) -> "Detector":
        """A fitted detector from a run dir written by :meth:`save`."""
        path = Path(path)
        saved = rundir.read_config(path)
        ckpt = rundir.read_checkpoint(path)
        if config_hash(saved) != ckpt.config_hash:
            raise DataError(f"{path / 'config.yaml'}: config_hash {config_hash(saved)} differs from the "
                            f"{ckpt.config_hash} of {path / rundir.CHECKPOINT_FILE}; the config was changed after "
                            "the detector was saved")
        det = cls.from_config(saved).prepare()
        det.fitted_, det.history_ = [], []
        for m in ckpt.models:
            model = build_detector(det.config_, m.n_inputs, m.n_sensors, det.spec_.window)
            model.load_state_dict(m.state_dict)
            model.to(det.trainer_.device)
            entities = [{"name": e.name, "columns": e.columns, "sensors": e.sensors, "covariates": e.covariates,
                         "groups": e.groups, "n_train": len(e.val_mask),
                         "prep": Preprocessor.from_state(e.scaler), "val_mask": e.val_mask,
                         "scoring": EntityScoring(det.config_, e.name, e.sensors, e.groups).fit(e.train, e.val_mask)}
                        for e in m.entities]
            fitted = Fitted(det, model, entities, m.input_idx, m.sensor_idx, m.history, m.fit_seconds,
                            m.train_score_seconds)
            det.fitted_.append(fitted)
            label = fitted.names[0] if len(entities) == 1 else f"pooled[{len(entities)}]"
            det.history_ += [{"entity": label, **rec} for rec in m.history]
        return det


def decide(proto: P.Protocol, es: P.EntityScores, anomaly_ratio=None) -> np.ndarray:
    """bool [T]: ``proto``'s decision on one entity, as its ``evaluate`` makes it
    (``madbench.protocols``; a test checks the two agree)."""
    from madbench.scoring.intervals import group_flags
    from madbench.scoring.thresholds import percentile_threshold, validation_threshold

    score = np.asarray(es.score, dtype=np.float64)
    ok = np.isfinite(score)
    if isinstance(proto, P.StrictProtocol):
        return ok & (np.where(ok, score, -np.inf) > validation_threshold(es.train_score[es.val_mask],
                                                                         **proto.threshold))
    if isinstance(proto, P.TSLibProtocol):
        if anomaly_ratio is None:
            raise ConfigError("protocol=tslib needs dataset.anomaly_ratio (a percentage)")
        thr = percentile_threshold(np.concatenate([es.train_score, es.score]), anomaly_ratio)
        return ok & (np.where(ok, score, -np.inf) > thr)
    if isinstance(proto, P.M2ADProtocol):
        flags, _ = proto._flags(es)
        pred = np.zeros(len(score), dtype=bool)
        for a, b, _ in group_flags(flags, es.score, proto.grouping, proto.padding, proto.bridge):
            pred[a:b + 1] = True
        return pred
    raise ConfigError(f"protocol={proto.name} gives no decision without test labels")
