"""Evaluation protocols: threshold + label granularity + aggregation over entities.

- ``strict`` (default): threshold from validation scores only; point labels, no point
  adjustment; the ``ALL`` rows report micro (pooled counts) and macro (mean) figures.
- ``madcluster``: window scores and window labels, best F1 over thresholds on test (uses
  test labels), range metrics on the binarised prediction; ``ALL`` = mean over entities.
- ``m2ad``: calibrated p < alpha, flagged steps grouped into intervals (``grouping``:
  ±padding and merged, the default; forward by ``bridge``; or runs of flags), event
  overlap counts summed over entities (``ALL``), F1 and F0.5.
  With ``scoring=raw`` the p-value is empirical, from the validation scores.
- ``tslib``: threshold = (100 − anomaly_ratio) percentile of train+test scores, then point
  adjustment (``pa_f1``); ``ALL`` = mean.
Every row carries ``threshold_uses_test_labels``.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np

from madbench import metrics as M
from madbench.data.entity import label_events
from madbench.errors import ConfigError
from madbench.scoring.intervals import GROUPINGS, group_flags
from madbench.scoring.thresholds import empirical_pvalues, percentile_threshold, validation_threshold

PROTOCOLS = ("strict", "madcluster", "m2ad", "tslib")
#: M2AD's alpha, used for empirical p-values when the scorer has no rule of its own
DEFAULT_ALPHA = 0.001


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
    p: np.ndarray | None = None       # [T] calibrated p-values (m2ad scoring)
    flags: np.ndarray | None = None   # [T] the scorer's own alarm rule (m2ad scoring)
    status: str = "ok"
    extras: dict = field(default_factory=dict)


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


class Protocol:
    name = ""
    uses_test_labels = False

    def __init__(self, window: int = 100, **params):
        self.window = int(window)
        self.params = params

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


class Strict(Protocol):
    name = "strict"

    def __init__(self, window: int = 100, threshold: dict | None = None, **params):
        super().__init__(window, **params)
        self.threshold = dict(threshold or {"method": "quantile", "q": 0.99})

    def evaluate(self, entities, anomaly_ratio=None):
        rows, pooled = [], {"tp": 0, "fp": 0, "fn": 0, "ptp": 0, "pfp": 0, "pfn": 0,
                            "etp": 0, "efp": 0, "efn": 0, "labels": [], "scores": []}
        for e in entities:
            thr = validation_threshold(e.train_score[e.val_mask], **self.threshold)
            ok = np.isfinite(e.score)
            y, s = e.labels[ok], e.score[ok]
            pred = s > thr
            m = M.evaluate(y, s, pred, self.window)
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


class MADCluster(Protocol):
    """MADCluster's reference evaluation (window-level; best F1 on test)."""

    name = "madcluster"
    uses_test_labels = True

    def evaluate(self, entities, anomaly_ratio=None):
        rows = []
        for e in entities:
            ok = np.isfinite(e.window_score)
            ws, starts = e.window_score[ok], e.window_start[ok]
            cum = np.concatenate([[0], np.cumsum(e.labels.astype(np.int64))])
            wl = ((cum[starts + e.window] - cum[starts]) > 0).astype(np.int8)
            best = M.best_f1(wl, ws)
            pred = ws >= best["threshold"]
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


def _steps(key: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError(f"{key}={value}; expected an integer >= 0 (steps)")
    return int(value)


class M2AD(Protocol):
    """M2AD: calibrated p < alpha → intervals → event overlap counts.

    ``alpha=None`` (default) uses the scorer's own rule (``scoring.alpha``, or the 4σ rule
    of ``scoring.calibration=std4``); a number applies p < alpha to the calibrated p.
    With ``scoring=raw`` the p-value is empirical, from the validation scores.
    ``grouping`` turns flags into intervals (``madbench.scoring.intervals``): ``padding``
    (±``padding`` steps, merged; the public code's, default), ``forward`` (first flag to
    last flag + ``bridge``) or ``none`` (runs of flags). The unused one of ``padding`` /
    ``bridge`` is ignored. After ``evaluate``, ``detected`` maps each entity to its
    [(start, end, score)].
    """

    name = "m2ad"

    def __init__(self, window: int = 100, alpha: float | None = None, padding: int = 50,
                 grouping: str = "padding", bridge: int = 360):
        super().__init__(window)
        if alpha is not None and not 0.0 < alpha < 1.0:
            raise ConfigError(f"protocol.m2ad.alpha={alpha}; expected a ratio in (0, 1) or null")
        if grouping not in GROUPINGS:
            raise ConfigError(f"protocol.m2ad.grouping={grouping}; expected one of {', '.join(GROUPINGS)}")
        self.alpha, self.grouping = alpha, grouping
        self.padding = _steps("protocol.m2ad.padding", padding)
        self.bridge = _steps("protocol.m2ad.bridge", bridge)
        self.detected: dict[str, list] = {}

    def _flags(self, e: EntityScores) -> tuple[np.ndarray, str]:
        if e.p is None:
            p = empirical_pvalues(e.train_score[e.val_mask], e.score)
            return np.nan_to_num(p, nan=1.0) < (self.alpha or DEFAULT_ALPHA), "empirical"
        if self.alpha is None and e.flags is not None:
            return e.flags.astype(bool), e.status
        return np.nan_to_num(e.p, nan=1.0) < (self.alpha or DEFAULT_ALPHA), e.status

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
            ok = np.isfinite(e.score)
            m = M.evaluate(e.labels[ok], e.score[ok], pred[ok], self.window)
            m.update({"event_tp": etp, "event_fp": efp, "event_fn": efn})
            m.update(M.event_scores(etp, efp, efn))
            # event overlap rewards wide intervals (one interval over the whole test split has
            # fp = 0 and fn = 0), so every row says how much of the split was flagged
            rows.append(self._row(e, m, self.alpha if self.alpha is not None else np.nan,
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


class TSLib(Protocol):
    """Time-Series-Library: percentile threshold over train+test scores, then PA."""

    name = "tslib"

    def evaluate(self, entities, anomaly_ratio=None):
        if anomaly_ratio is None:
            raise ConfigError("protocol=tslib needs dataset.anomaly_ratio (a percentage)")
        rows = []
        for e in entities:
            thr = percentile_threshold(np.concatenate([e.train_score, e.score]), anomaly_ratio)
            ok = np.isfinite(e.score)
            y, s = e.labels[ok], e.score[ok]
            m = M.evaluate(y, s, s > thr, self.window)
            rows.append(self._row(e, m, thr, n_scored=int(ok.sum()), n_missing=int((~ok).sum())))
        if rows:
            rows.append(self._mean_row(rows, aggregate="mean"))
        return rows


REGISTRY = {c.name: c for c in (Strict, MADCluster, M2AD, TSLib)}


def keys(name: str) -> list[str]:
    """The parameters ``protocol.<name>`` takes (its constructor's)."""
    sig = inspect.signature(REGISTRY[name].__init__)
    return [k for k, p in sig.parameters.items() if k != "self" and p.kind is not p.VAR_KEYWORD]


def build(name: str, params: dict) -> Protocol:
    """The protocol ``name`` with ``params``; an unknown protocol, an unknown key (a typo
    would otherwise be ignored) or a bad value is a one-line ConfigError naming it."""
    if name not in REGISTRY:
        raise ConfigError(f"protocol={name!r}; expected one of {list(REGISTRY)}")
    allowed = keys(name)
    unknown = [k for k in params if k not in allowed]
    if unknown:
        raise ConfigError(f"protocol.{name}.{unknown[0]}: unknown key; expected one of {', '.join(allowed)}")
    return REGISTRY[name](**params)
