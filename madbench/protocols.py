"""Evaluation protocols: threshold + label granularity + aggregation over entities.

- ``strict`` (default): threshold from validation scores only; point labels, no point
  adjustment; the ``ALL`` rows report micro (pooled counts) and macro (mean) figures.
- ``madcluster``: window scores and window labels, best F1 over thresholds on test (uses
  test labels), range metrics on the binarised prediction; ``ALL`` = mean over entities.
  A window's label covers the steps its score describes (``window_labels``): a
  forecaster's target step(s), a reconstruction's whole window.
- ``m2ad``: the scoring stage's alarms (``flags``: M2AD's calibrated p < ``scoring.alpha``,
  a raw score's POT or empirical p-value with ``scoring.calibration``, the threshold
  scorers' intervals) grouped into intervals (``grouping``: ±padding and merged, the
  default; forward by ``bridge``; or runs of flags), event overlap counts summed over
  entities (``ALL``), F1 and F0.5.
- ``tslib``: threshold = (100 − anomaly_ratio) percentile of train+test scores, then point
  adjustment (``pa_f1``); ``ALL`` = mean.
Protocols threshold and aggregate; they never calibrate (that is the scoring stage's job,
``madbench.scoring.scorers``). ``range_window`` is the sliding window of the range metrics
(R-AUC, VUS), not the model's window. Every row carries ``threshold_uses_test_labels``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from madbench import metrics as M
from madbench.data.entity import label_events
from madbench.config import check_keys
from madbench.errors import ConfigError, DataError
from madbench.scoring.intervals import GROUPINGS, group_flags
from madbench.scoring.thresholds import check_threshold, percentile_threshold, validation_threshold

log = logging.getLogger(__name__)

PROTOCOLS = ("strict", "madcluster", "m2ad", "tslib")


@dataclass
class EntityScores:
    """Everything a protocol needs about one entity, from ``scores.npz`` alone."""

    name: str
    labels: np.ndarray          # [T] int8 point labels
    score: np.ndarray           # [T] final test score, NaN = unscored
    train_score: np.ndarray     # [T_train] final score on train, NaN = unscored
    val_mask: np.ndarray        # [T_train] bool: validation steps
    window_score: np.ndarray    # [N] test window scores
    window_start: np.ndarray    # [N]
    window: int
    #: offsets from a window's start of the steps its score describes (the score stage's
    #: WindowSpec.score_offsets()); None for runs written before they were kept
    window_offsets: np.ndarray | None = None
    p: np.ndarray | None = None       # [T] calibrated p-values (m2ad scoring)
    flags: np.ndarray | None = None   # [T] the scorer's own alarm rule (m2ad scoring)
    status: str = "ok"
    extras: dict = field(default_factory=dict)


@dataclass
class Decision:
    """What a protocol flagged on one entity, kept for the plots: the values its rule
    reads (``series``: step scores, or window scores for ``madcluster``) at the test steps
    ``x`` they describe, its ``threshold`` (None for an interval rule), which of them it
    predicted anomalous, and its ``intervals`` (m2ad). The arrays are the ones the metrics
    were computed on, so a plot shows the decision that was scored, not a re-derivation."""

    protocol: str
    x: np.ndarray
    series: np.ndarray
    threshold: float | None
    predicted: np.ndarray
    intervals: list = field(default_factory=list)


def window_labels(labels: np.ndarray, starts: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """int8 [N]: 1 when any step a window's score describes is anomalous. Those steps are
    ``starts + offsets``: a forecaster's target step(s) ``[window + gap, window + gap +
    horizon)``, a reconstruction's ``[0, window)``. The offsets are one contiguous run."""
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.size == 0 or np.any(np.diff(offsets) != 1):
        raise ValueError(f"window offsets must be one contiguous run of steps; got {offsets.tolist()}")
    starts = np.asarray(starts, dtype=np.int64)
    cum = np.concatenate([[0], np.cumsum(np.asarray(labels, dtype=np.int64))])
    return ((cum[starts + offsets[-1] + 1] - cum[starts + offsets[0]]) > 0).astype(np.int8)


def _nan_row() -> dict:
    return {c: np.nan for c in M.METRIC_COLUMNS}


def _counts(labels, preds):
    tp = int(np.sum((labels == 1) & preds))
    fp = int(np.sum((labels == 0) & preds))
    fn = int(np.sum((labels == 1) & ~preds))
    return tp, fp, fn


def _prf(tp, fp, fn) -> dict:
    """Point P/R/F1/F0.5 from pooled counts, with madbench.metrics' conventions."""
    e = M.event_scores(tp, fp, fn)
    return {"precision": e["event_precision"], "recall": e["event_recall"], "f1": e["event_f1"], "f05": e["event_f05"]}


def _int(key: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{key}={value!r}; expected an integer >= {minimum}")
    return int(value)


class Protocol:
    """A protocol takes only the keys its constructor names (``build`` refuses the rest)
    and checks their values there, so a config is refused before training."""

    name = ""
    uses_test_labels = False
    #: whether it counts the scoring stage's alarms (``EntityScores.flags``) instead of
    #: thresholding the score itself; a scorer that raises none is refused before training
    needs_alarms = False
    #: what it reads of the train split's final scores (``EntityScores.train_score``):
    #: ``none``, ``validation`` (the ``val_mask`` steps) or ``all`` (madbench.train_scores)
    train_reads = "none"

    def __init__(self, range_window: int = 100):
        self.window = _int(f"protocol.{self.name}.range_window", range_window, 1)
        self.decisions: dict[str, Decision] = {}  # entity name -> its decision, after evaluate

    def evaluate(self, entities: list[EntityScores], anomaly_ratio: float | None = None) -> list[dict]:
        raise NotImplementedError

    def _row(self, e: EntityScores | str, metrics: dict, threshold, **kw) -> dict:
        row = {"entity": e if isinstance(e, str) else e.name, "aggregate": kw.pop("aggregate", ""),
               "protocol": self.name, "threshold": threshold, "threshold_uses_test_labels": self.uses_test_labels}
        row.update(_nan_row())
        row.update({k: v for k, v in metrics.items() if k in M.METRIC_COLUMNS})
        row.update(kw)
        return row

    def _mean_row(self, rows: list[dict], aggregate: str = "macro") -> dict:
        """The ALL row that averages every metric over the entity rows (NaN-skipping)."""
        out = {}
        for c in M.METRIC_COLUMNS:
            vals = np.array([r[c] for r in rows], dtype=np.float64)
            out[c] = float(np.nanmean(vals)) if np.isfinite(vals).any() else np.nan
        return self._row("ALL", out, np.nan, aggregate=aggregate, n_entities=len(rows))


class StrictProtocol(Protocol):
    name = "strict"
    train_reads = "validation"

    def __init__(self, range_window: int = 100, threshold: dict | None = None):
        super().__init__(range_window)
        self.threshold = check_threshold(dict(threshold or {}), f"protocol.{self.name}.threshold")

    def evaluate(self, entities, anomaly_ratio=None):
        rows, pooled = [], {"tp": 0, "fp": 0, "fn": 0, "ptp": 0, "pfp": 0, "pfn": 0,
                            "etp": 0, "efp": 0, "efn": 0, "labels": [], "scores": []}
        for e in entities:
            thr = validation_threshold(e.train_score[e.val_mask], **self.threshold)
            ok = np.isfinite(e.score)
            y, s = e.labels[ok], e.score[ok]
            pred = s > thr
            self.decisions[e.name] = Decision(self.name, np.flatnonzero(ok), s, float(thr), pred)
            m = M.all_metrics(y, s, pred, self.window)
            rows.append(self._row(e, m, thr, n_scored=int(ok.sum()), n_missing=int((~ok).sum())))
            tp, fp, fn = _counts(y, pred)
            adj = M.point_adjust(y, pred)
            ptp, pfp, pfn = _counts(y, adj)
            for k, v in zip(("tp", "fp", "fn", "ptp", "pfp", "pfn"), (tp, fp, fn, ptp, pfp, pfn)):
                pooled[k] += v
            pooled["etp"] += m["event_tp"]
            pooled["efp"] += m["event_fp"]
            pooled["efn"] += m["event_fn"]
            pooled["labels"].append(y)
            pooled["scores"].append(s)
        if not rows:
            return rows
        micro = _prf(pooled["tp"], pooled["fp"], pooled["fn"])
        micro.update({"pa_f1": _prf(pooled["ptp"], pooled["pfp"], pooled["pfn"])["f1"],
                      "event_tp": pooled["etp"], "event_fp": pooled["efp"], "event_fn": pooled["efn"]})
        micro.update(M.event_scores(pooled["etp"], pooled["efp"], pooled["efn"]))
        micro.update(M.auc(np.concatenate(pooled["labels"]), np.concatenate(pooled["scores"])))
        rows.append(self._row("ALL", micro, np.nan, aggregate="micro", n_entities=len(entities)))
        rows.append(self._mean_row(rows[:-1]))
        return rows


class MADClusterProtocol(Protocol):
    """MADCluster's reference evaluation (window-level; best F1 on test)."""

    name = "madcluster"
    uses_test_labels = True

    def evaluate(self, entities, anomaly_ratio=None):
        rows = []
        for e in entities:
            ok = np.isfinite(e.window_score)
            ws, starts = e.window_score[ok], e.window_start[ok]
            offsets = e.window_offsets
            if offsets is None:
                # a run dir written before the offsets were kept: the old span, right for a
                # reconstruction but not for a forecaster (its score describes step start+window)
                log.warning("entity %s: scores.npz has no score_offsets (written before they were kept); madcluster "
                            "window labels cover [start, start + %d), which misses a forecaster's target step; "
                            "re-run the job for exact window labels", e.name, e.window)
                offsets = np.arange(e.window)
            wl = window_labels(e.labels, starts, offsets)
            best = M.best_f1(wl, ws)
            pred = ws >= best["threshold"]
            # a window score is drawn at the last step it describes
            self.decisions[e.name] = Decision(self.name, starts + np.asarray(offsets)[-1], ws, float(best["threshold"]),
                                              pred)
            m = M.threshold_dependent(wl, pred)
            m.update({"precision": best["precision"], "recall": best["recall"], "f1": best["f1"]})
            m.update(M.auc(wl, ws))
            # the reference computes range metrics on the binarised prediction
            m.update(M.range_auc(wl, pred.astype(np.float64), self.window))
            m.update(M.vus(wl, pred.astype(np.float64), self.window))
            rows.append(self._row(e, m, best["threshold"], n_scored=int(ok.sum()),
                             n_missing=int(len(e.labels) - ok.sum())))
        if rows:
            rows.append(self._mean_row(rows, aggregate="mean"))
        return rows


class M2ADProtocol(Protocol):
    """M2AD: the scoring stage's alarms → intervals → event overlap counts.

    The alarms are the scorer's (``EntityScores.flags``: M2AD's p < ``scoring.alpha`` or its
    4σ rule, a raw score calibrated by ``scoring.calibration``, the threshold scorers'
    intervals); a config whose scorer raises none is refused when it is composed
    (``madbench.checks``). ``grouping`` turns flags into intervals
    (``madbench.scoring.intervals``): ``padding`` (±``padding`` steps, merged; the public
    code's, default), ``forward`` (first flag to last flag + ``bridge``) or ``none`` (runs
    of flags). The unused one of ``padding`` / ``bridge`` is ignored. After ``evaluate``,
    ``detected`` maps each entity to its [(start, end, score)].
    """

    name = "m2ad"
    needs_alarms = True

    def __init__(self, range_window: int = 100, padding: int = 50, grouping: str = "padding", bridge: int = 360):
        super().__init__(range_window)
        if grouping not in GROUPINGS:
            raise ConfigError(f"protocol.m2ad.grouping={grouping!r}; expected one of {', '.join(GROUPINGS)}")
        self.padding = _int("protocol.m2ad.padding", padding, 0)
        self.grouping, self.bridge = grouping, _int("protocol.m2ad.bridge", bridge, 0)
        self.detected: dict[str, list] = {}

    def _flags(self, e: EntityScores) -> tuple[np.ndarray, str]:
        if e.flags is None:
            raise DataError(f"entity {e.name}: protocol=m2ad counts the scoring stage's alarms, and these scores have "
                            "none (scoring=raw without scoring.calibration); re-score with scoring.calibration=pot "
                            "or scoring=m2ad")
        return e.flags.astype(bool), e.status

    def evaluate(self, entities, anomaly_ratio=None):
        rows, tp, fp, fn, flagged, steps = [], 0, 0, 0, 0, 0
        for e in entities:
            flags, calibration = self._flags(e)
            found = group_flags(flags, e.score, self.grouping, self.padding, self.bridge)
            self.detected[e.name] = found
            detected = [(a, b) for a, b, _ in found]
            etp, efp, efn = M.event_counts_intervals(label_events(e.labels), detected)
            pred = np.zeros(len(e.labels), dtype=bool)
            for a, b in detected:
                pred[a:b + 1] = True
            self.decisions[e.name] = Decision(self.name, np.arange(len(e.score)), e.score, None, pred, detected)
            ok = np.isfinite(e.score)
            m = M.all_metrics(e.labels[ok], e.score[ok], pred[ok], self.window)
            m.update({"event_tp": etp, "event_fp": efp, "event_fn": efn})
            m.update(M.event_scores(etp, efp, efn))
            # event overlap rewards wide intervals (one interval over the whole test split has
            # fp = 0 and fn = 0), so every row says how much of the split was flagged
            rows.append(self._row(e, m, np.nan,
                             n_scored=int(ok.sum()), n_missing=int((~ok).sum()), n_detected=len(detected),
                             detected_fraction=float(pred.mean()) if pred.size else np.nan,
                             calibration=calibration))
            tp, fp, fn = tp + etp, fp + efp, fn + efn
            flagged, steps = flagged + int(pred.sum()), steps + pred.size
        if rows:
            agg = {"event_tp": tp, "event_fp": fp, "event_fn": fn}
            agg.update(M.event_scores(tp, fp, fn))
            rows.append(self._row("ALL", agg, np.nan, aggregate="sum", n_entities=len(entities),
                                  detected_fraction=flagged / steps if steps else np.nan))
        return rows


class TSLibProtocol(Protocol):
    """Time-Series-Library: percentile threshold over train+test scores, then PA."""

    name = "tslib"
    train_reads = "all"

    def evaluate(self, entities, anomaly_ratio=None):
        if anomaly_ratio is None:
            raise ConfigError("protocol=tslib needs dataset.anomaly_ratio (a percentage)")
        rows = []
        for e in entities:
            thr = percentile_threshold(np.concatenate([e.train_score, e.score]), anomaly_ratio)
            ok = np.isfinite(e.score)
            y, s = e.labels[ok], e.score[ok]
            self.decisions[e.name] = Decision(self.name, np.flatnonzero(ok), s, float(thr), s > thr)
            m = M.all_metrics(y, s, s > thr, self.window)
            rows.append(self._row(e, m, thr, n_scored=int(ok.sum()), n_missing=int((~ok).sum())))
        if rows:
            rows.append(self._mean_row(rows, aggregate="mean"))
        return rows


def attach_interpretation(rows: list[dict], entities: list[EntityScores]) -> list[dict]:
    """Fill the interpretation columns (``madbench.metrics.interpretation``) of a protocol's
    rows: an entity's own values on its rows, steps and events pooled over entities on the
    ``ALL`` rows (the mean over entities on ``macro``/``mean`` rows). They rank sensors
    against test labels and ground-truth sensors and depend on no threshold, so every
    protocol's rows carry the same values; they never feed a threshold."""
    from madbench.metrics import interpretation as I

    parts, kinds = {}, {}
    for e in entities:
        x = e.extras
        if "attribution" not in x or "interp_spans" not in x:
            continue
        parts[e.name] = I.event_parts(x["attribution"], x["attribution_steps"], e.labels, x["interp_spans"],
                                      x["interp_sensors"])
        kinds[e.name] = x.get("attribution_kind", "")
    if not parts:
        return rows
    own = {n: I.summarise([p]) | {"attribution": kinds[n]} for n, p in parts.items()}
    pooled = I.summarise(list(parts.values()))
    macro = dict(pooled)  # counts stay summed
    for c in ("hit_100", "hit_150", "ndcg_100", "hit_100_event", "hit_150_event", "ndcg_100_event"):
        vals = np.array([v[c] for v in own.values()], dtype=np.float64)
        macro[c] = float(np.nanmean(vals)) if np.isfinite(vals).any() else np.nan
    pooled["attribution"] = macro["attribution"] = ";".join(sorted(set(kinds.values())))
    for r in rows:
        if r["entity"] == "ALL":
            r.update(macro if r.get("aggregate") in ("macro", "mean") else pooled)
        elif r["entity"] in own:
            r.update(own[r["entity"]])
    return rows


REGISTRY = {c.name: c for c in (StrictProtocol, MADClusterProtocol, M2ADProtocol, TSLibProtocol)}


def build(name: str, params: dict) -> Protocol:
    """The protocol ``name`` from its config node: its ``_target_`` class (configs/protocol/,
    like every other group), or the class registered under ``name`` for a node without one
    (run dirs written before); an unknown protocol, an unknown key (a typo would otherwise
    be ignored) or a bad value is a one-line ConfigError naming it."""
    params = dict(params or {})
    target = params.pop("_target_", None)
    if target is not None:
        from hydra.utils import get_object

        try:
            cls = get_object(str(target))
        except Exception as e:
            raise ConfigError(f"protocol.{name}._target_={target!r}: cannot import it ({e})") from None
        if not (isinstance(cls, type) and issubclass(cls, Protocol)):
            raise ConfigError(f"protocol.{name}._target_={target!r}: not a madbench protocol class")
    elif name in REGISTRY:
        cls = REGISTRY[name]
    else:
        raise ConfigError(f"protocol={name!r}; expected one of {list(REGISTRY)}")
    if cls.name != name:
        raise ConfigError(f"protocol.{name}._target_={target!r} is the {cls.name} protocol; its config node must be "
                          f"protocol.{cls.name}")
    check_keys(cls, params, f"protocol.{name}")
    return cls(**params)
