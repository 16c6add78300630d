"""The scoring stage: turn placed scores/residuals into the final anomaly score.

Every scorer is fitted on the train split's scores (sklearn style; ``val_mask`` marks the
split's validation steps) and then transforms a split into a ``Scored``: ``score`` [T]
(higher = more anomalous, NaN where unscored) and, for calibrated scorers, ``p`` [T] (a
p-value per step), ``sensor_p`` [T, S] and ``flags`` [T], the scorer's own alarms.

Calibration happens here and only here: M2AD's Gamma / χ² / 4σ on the Fisher statistic,
a raw score's POT tail or empirical p-value on its validation scores, and the threshold
scorers' intervals. A scorer that raises alarms says so (``gives_alarms``): the m2ad
protocol counts the alarms as events and needs one that does.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from madbench.errors import ConfigError
from madbench.scoring.base import SeriesScores


def _choice(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"scoring.{key}={value!r}; expected one of {', '.join(allowed)}")


@dataclass
class Scored:
    score: np.ndarray
    p: np.ndarray | None = None
    sensor_p: np.ndarray | None = None
    flags: np.ndarray | None = None
    status: str = "ok"
    notes: list[str] = field(default_factory=list)
    #: [T, S] unclipped ln p per sensor (m2ad scoring): ranks sensors where p is below the clip
    sensor_logp: np.ndarray | None = None


class RawScorer:
    """The objective's own per-step score. ``calibration`` turns it into p-values on its
    validation scores (the train split's last ``trainer.val_ratio``, never test), and the
    alarms are p < ``alpha``:

    - ``none`` (default): the score alone, no p-value and no alarm;
    - ``pot``: a generalized Pareto tail fitted above the validation scores' ``pot_level``
      quantile (``madbench.scoring.thresholds.PeaksOverThreshold``; Siffer et al. 2017). An
      entity whose validation scores have no tail to fit (a constant, a count with a few
      values) is ``uncalibrated`` and raises no alarm, as M2AD's zero variance;
    - ``empirical``: ``(1 + #val >= s) / (1 + n_val)``, never below ``1 / (1 + n_val)``:
      refused when that floor is not below ``alpha`` (it could never raise an alarm).
    """

    needs_residuals = False
    CALIBRATIONS = ("none", "pot", "empirical")

    def __init__(self, calibration: str = "none", alpha: float = 0.001, pot_level: float = 0.98):
        _choice("calibration", calibration, self.CALIBRATIONS)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha < 1.0:
            raise ConfigError(f"scoring.alpha={alpha!r}; expected a ratio in (0, 1)")
        if isinstance(pot_level, bool) or not isinstance(pot_level, (int, float)) or not 0.0 < pot_level < 1.0:
            raise ConfigError(f"scoring.pot_level={pot_level!r}; expected a ratio in (0, 1)")
        self.calibration, self.alpha, self.pot_level = calibration, float(alpha), float(pot_level)

    @property
    def gives_alarms(self) -> bool:
        return self.calibration != "none"

    @property
    def train_reads(self) -> str:
        """What ``fit`` reads of the train split (``madbench.train_scores``): the
        validation steps when it calibrates, nothing otherwise."""
        return "none" if self.calibration == "none" else "validation"

    def fit(self, train: SeriesScores, sensors: list[str] | None = None, groups: dict | None = None,
            val_mask: np.ndarray | None = None) -> "RawScorer":
        from madbench.scoring.thresholds import PeaksOverThreshold, TailFitError

        self.status_, self.notes_ = "ok", []
        if self.calibration == "none":
            return self
        step = np.asarray(train.step, dtype=np.float64)
        val = step[np.asarray(val_mask, dtype=bool)] if val_mask is not None else step
        if self.calibration == "pot":
            try:
                self.tail_ = PeaksOverThreshold(self.pot_level, what="scoring.calibration=pot").fit(val)
            except TailFitError as err:
                # too few distinct validation scores in the tail calibrate nothing: no alarm
                self.tail_, self.status_ = None, "uncalibrated"
                self.notes_ = [f"{err}; nothing flagged"]
            return self
        self.check_validation_steps(int(np.isfinite(val).sum()))
        self.val_ = val
        return self

    def check_validation_steps(self, n: int) -> None:
        """Refuse ``calibration=empirical`` when ``n`` validation scores can never give a
        p-value below alpha. It needs only the split sizes, so a job runs it before training
        (``madbench.checks.check_sizes``) as well as in :meth:`fit`."""
        if self.calibration == "empirical" and 1.0 / (1.0 + n) >= self.alpha:
            raise ValueError(
                f"scoring.calibration=empirical cannot raise an alarm: with {n} validation scores the smallest "
                f"p-value is 1/{n + 1} = {1.0 / (1 + n):.2g}, not below scoring.alpha={self.alpha:g}; use "
                f"scoring.calibration=pot, scoring.alpha > {1.0 / (1 + n):.2g}, or at least "
                f"{math.ceil(1 / self.alpha)} validation steps")

    def transform(self, s: SeriesScores) -> Scored:
        from madbench.scoring.thresholds import empirical_pvalues

        score = np.asarray(s.step, dtype=np.float64)
        if self.calibration == "none":
            return Scored(score=score)
        if self.calibration == "pot" and self.tail_ is None:
            p = np.where(np.isfinite(score), 1.0, np.nan)
        elif self.calibration == "pot":
            p = self.tail_.pvalues(score)
        else:
            p = empirical_pvalues(self.val_, score)
        return Scored(score=score, p=p, flags=np.nan_to_num(p, nan=1.0) < self.alpha, status=self.status_,
                      notes=list(self.notes_))


def _size(key: str, value, *, allow_null: bool = False):
    """A size in steps (int >= 1) or a ratio of the scored steps (0 < float < 1)."""
    if value is None and allow_null:
        return None
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and (value >= 1 if isinstance(value, int) else 0.0 < value < 1.0))
    if not ok:
        raise ConfigError(f"scoring.{key}={value!r}; expected an integer >= 1 or a ratio in (0, 1)"
                          + (" or null" if allow_null else ""))
    return value


class DynamicThresholdScoring:
    """Nonparametric dynamic thresholding (Hundman et al. 2018) on any backbone's residuals,
    as Orion's ``regression_errors``/``reconstruction_errors`` + ``find_anomalies`` run it
    (``madbench.scoring.dynamic_threshold``).

    ``score`` is the smoothed error: ``|y - ŷ|`` averaged over the sensors (Orion's
    pipelines model one target column, where this is ``|y - ŷ|``), smoothed by an EWMA
    (``smoothing=ewma``, span ``smoothing_window``: Orion's forecast pipelines) or a centred
    rolling mean (``rolling``, at most 200 steps: its reconstruction pipelines). ``flags``
    marks the steps inside the detected intervals (already padded by ``anomaly_padding``
    and merged), so the ``m2ad`` protocol should count them with ``grouping=none``. There
    is no p-value. Nothing is fitted on train: the thresholds come from the scored split's
    own errors, window by window, as in the reference (no labels are used).

    Sizes are in steps (int) or a ratio of the scored steps (float < 1):
    ``window_size`` (0.33 in Orion's pipelines), ``window_step`` (a ratio of the window:
    0.1), ``smoothing_window`` (0.01). A threshold window shorter than the smoothing span
    is refused.
    """

    needs_residuals = True
    SMOOTHINGS = ("ewma", "rolling", "none")

    def __init__(self, smoothing: str = "ewma", smoothing_window=0.01, window_size=0.33, window_step=0.1,
                 fixed_threshold: bool = False, k: float = 4.0, search: str = "fmin", z_range=(0, 12),
                 min_percent: float = 0.13, anomaly_padding: int = 50, lower_threshold: bool = False):
        from madbench.scoring.dynamic_threshold import SEARCHES

        _choice("smoothing", smoothing, self.SMOOTHINGS)
        _choice("search", search, SEARCHES)
        self.smoothing_window = _size("smoothing_window", smoothing_window)
        self.window_size = _size("window_size", window_size, allow_null=True)
        self.window_step = _size("window_step", window_step, allow_null=True)
        for key, value in (("fixed_threshold", fixed_threshold), ("lower_threshold", lower_threshold)):
            if not isinstance(value, bool):
                raise ConfigError(f"scoring.{key}={value!r}; expected true or false")
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not k > 0:
            raise ConfigError(f"scoring.k={k!r}; expected a number > 0")
        if isinstance(min_percent, bool) or not isinstance(min_percent, (int, float)) or not 0.0 <= min_percent < 1.0:
            raise ConfigError(f"scoring.min_percent={min_percent!r}; expected a ratio in [0, 1)")
        if isinstance(anomaly_padding, bool) or not isinstance(anomaly_padding, int) or anomaly_padding < 0:
            raise ConfigError(f"scoring.anomaly_padding={anomaly_padding!r}; expected an integer >= 0")
        z = list(z_range) if hasattr(z_range, "__len__") and not isinstance(z_range, str) else None
        if (z is None or len(z) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in z)
                or not z[0] < z[1]):
            raise ConfigError(f"scoring.z_range={z_range!r}; expected [low, high] with low < high")
        self.smoothing, self.search, self.z_range = smoothing, search, (z[0], z[1])
        self.fixed_threshold, self.k, self.lower_threshold = fixed_threshold, float(k), lower_threshold
        self.min_percent, self.anomaly_padding = float(min_percent), anomaly_padding
        self._check_span()

    def _span_and_window(self, n: int) -> tuple[int, int | None]:
        """(smoothing span, threshold window) in steps for ``n`` scored steps."""
        from madbench.scoring.dynamic_threshold import resolve_size

        span = resolve_size(self.smoothing_window, n, cap=200 if self.smoothing == "rolling" else None)
        window = self.window_size
        if isinstance(window, float):
            window = math.ceil(n * window)
        return span, window

    def _check_span(self, n: int | None = None) -> None:
        """A threshold window shorter than the smoothing span is refused: when both are in
        steps or both ratios, at construction; otherwise once the scored steps are known."""
        if self.smoothing == "none" or self.window_size is None:
            return
        if n is None:
            span, window = self.smoothing_window, self.window_size
            if isinstance(span, float) != isinstance(window, float):
                return
        else:
            span, window = self._span_and_window(n)
        if window < span:
            where = f" ({window} < {span} steps of {n} scored)" if n is not None else ""
            raise ConfigError(f"scoring.window_size={self.window_size} is shorter than the smoothing span "
                              f"scoring.smoothing_window={self.smoothing_window}{where}; expected a threshold window "
                              "at least as long as the span")

    gives_alarms = True
    #: telemanom thresholds each test window on its own errors: fit reads no train score
    train_reads = "none"

    def fit(self, train: SeriesScores, sensors: list[str] | None = None, groups: dict | None = None,
            val_mask: np.ndarray | None = None) -> "DynamicThresholdScoring":
        if train.residuals is None:
            raise ValueError("scoring=dynamic_threshold needs per-sensor residuals")
        return self

    def errors(self, residuals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the scored rows' positions, their smoothed errors)."""
        from madbench.scoring import dynamic_threshold as dt
        from madbench.scoring.errors import missing_rows

        r = np.asarray(residuals, dtype=np.float64)
        rows = np.flatnonzero(~missing_rows(r, "residuals"))
        e = np.abs(r[rows]).mean(axis=1)
        if rows.size == 0 or self.smoothing == "none":
            return rows, e
        self._check_span(rows.size)
        span, _ = self._span_and_window(rows.size)
        return rows, (dt.ewma(e, span) if self.smoothing == "ewma" else dt.rolling_mean(e, span))

    def transform(self, s: SeriesScores) -> Scored:
        from madbench.scoring.dynamic_threshold import find_anomalies

        T = len(s.step)
        rows, e = self.errors(s.residuals)
        score = np.full(T, np.nan)
        score[rows] = e
        flags = np.zeros(T, dtype=bool)
        if rows.size:
            _, window = self._span_and_window(rows.size)
            step = self.window_step
            if isinstance(step, float):
                step = math.ceil((window or rows.size) * step)
            found = find_anomalies(e, window_size=window, window_step=step, z_range=self.z_range, search=self.search,
                                   fixed=self.fixed_threshold, k=self.k, padding=self.anomaly_padding,
                                   min_percent=self.min_percent, lower_threshold=self.lower_threshold)
            # intervals are over the scored rows; in time they run from the first row's step to the last's
            for a, b, _ in found:
                flags[rows[a]:rows[b] + 1] = True
        return Scored(score=score, flags=flags)


class PercentileThresholdScoring:
    """Orion's Anomaly Transformer thresholding (``anomaly_transformer.threshold_anomalies``)
    on the objective's own per-step score: flag the steps above the ``100 - anomaly_ratio``
    percentile of the train and the scored split's scores together, pad each run by
    ``anomaly_padding``, prune by ``min_percent`` and merge
    (``madbench.scoring.dynamic_threshold.percentile_anomalies``). The threshold sees the
    scored split's scores, never its labels. ``score`` is the step score unchanged;
    ``flags`` the intervals (count them with ``protocol.m2ad.grouping=none``)."""

    needs_residuals = False

    def __init__(self, anomaly_ratio: float = 1.0, anomaly_padding: int = 50, min_percent: float = 0.1,
                 reference_quirks: bool = False):
        if (isinstance(anomaly_ratio, bool) or not isinstance(anomaly_ratio, (int, float))
                or not 0.0 < anomaly_ratio < 100.0):
            raise ConfigError(f"scoring.anomaly_ratio={anomaly_ratio!r}; expected a percentage in (0, 100)")
        if isinstance(anomaly_padding, bool) or not isinstance(anomaly_padding, int) or anomaly_padding < 0:
            raise ConfigError(f"scoring.anomaly_padding={anomaly_padding!r}; expected an integer >= 0")
        if isinstance(min_percent, bool) or not isinstance(min_percent, (int, float)) or not 0.0 <= min_percent < 1.0:
            raise ConfigError(f"scoring.min_percent={min_percent!r}; expected a ratio in [0, 1)")
        if not isinstance(reference_quirks, bool):
            raise ConfigError(f"scoring.reference_quirks={reference_quirks!r}; expected true or false")
        self.anomaly_ratio, self.anomaly_padding = float(anomaly_ratio), anomaly_padding
        self.min_percent, self.reference_quirks = float(min_percent), reference_quirks

    gives_alarms = True
    #: the percentile is over every train score and the scored split's
    train_reads = "all"

    def fit(self, train: SeriesScores, sensors: list[str] | None = None, groups: dict | None = None,
            val_mask: np.ndarray | None = None) -> "PercentileThresholdScoring":
        step = np.asarray(train.step, dtype=np.float64)
        self.train_scores_ = step[np.isfinite(step)]
        return self

    def transform(self, s: SeriesScores) -> Scored:
        from madbench.scoring.dynamic_threshold import percentile_anomalies

        score = np.asarray(s.step, dtype=np.float64)
        rows = np.flatnonzero(np.isfinite(score))
        flags = np.zeros(len(score), dtype=bool)
        found = percentile_anomalies(score[rows], self.train_scores_, anomaly_ratio=self.anomaly_ratio,
                                     padding=self.anomaly_padding, min_percent=self.min_percent,
                                     reference_quirks=self.reference_quirks)
        for a, b, _ in found:
            flags[rows[a]:rows[b] + 1] = True
        return Scored(score=score, flags=flags)


class M2ADScoring:
    """M2AD on any backbone's per-sensor residuals: errors (point | area) → per-sensor GMM
    p-values → weighted Fisher sum → calibrated p (``madbench.scoring.m2ad``).

    ``score`` is the Fisher statistic s (higher = more anomalous), ``p`` the calibrated
    p-value and ``flags`` the scorer's own rule (p < alpha, or s > mean + 4σ for std4).
    Sensor groups come from the entity's metadata (``meta["groups"]``) unless ``weights``
    is given. ``reference_quirks`` reproduces the authors' substring group matching and
    their per-split z-scoring of area errors; by default test area errors use the train
    statistics.
    """

    needs_residuals = True
    #: the GMMs (and the area errors' statistics) are fitted on every train residual
    train_reads = "all"

    def __init__(self, error: str = "point", distribution: str = "gmm", n_components: int = 1,
                 covariance_type: str = "spherical", two_sided: bool | None = None, calibration: str = "gamma",
                 alpha: float = 0.001, weights: dict | None = None, reference_quirks: bool = False,
                 com: float = 10.0, area_window: int = 10, dx: float = 100.0, random_state: int | None = 0):
        from madbench.scoring.m2ad import CALIBRATIONS, COVARIANCE_TYPES, DISTRIBUTIONS

        _choice("error", error, ("point", "area"))
        _choice("distribution", distribution, DISTRIBUTIONS)
        _choice("covariance_type", covariance_type, COVARIANCE_TYPES)
        _choice("calibration", calibration, CALIBRATIONS)
        if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
            raise ConfigError(f"scoring.n_components={n_components!r}; expected an integer >= 1")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha < 1.0:
            raise ConfigError(f"scoring.alpha={alpha!r}; expected a ratio in (0, 1)")
        for key, value in (("two_sided", two_sided), ("reference_quirks", reference_quirks)):
            if value is not None and not isinstance(value, bool):
                raise ConfigError(f"scoring.{key}={value!r}; expected true or false"
                                  + (" or null" if key == "two_sided" else ""))
        # com = 0 is no smoothing (pandas' ewm allows com >= 0); dx divides, so it must be > 0
        for key, value, low in (("com", com, ">= 0"), ("dx", dx, "> 0")):
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not (value >= 0 if low == ">= 0" else value > 0)):
                raise ConfigError(f"scoring.{key}={value!r}; expected a number {low}")
        if isinstance(area_window, bool) or not isinstance(area_window, int) or area_window < 1:
            raise ConfigError(f"scoring.area_window={area_window!r}; expected an integer >= 1")
        if weights is not None and not isinstance(weights, Mapping):
            raise ConfigError(f"scoring.weights={weights!r}; expected null or {{group: {{weight: w, sensors: [...]}}}}")
        self.error = error
        self.distribution = distribution
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.two_sided = two_sided
        self.calibration = calibration
        self.alpha = alpha
        self.weights = weights
        self.reference_quirks = reference_quirks
        self.com, self.area_window, self.dx = com, area_window, dx
        self.random_state = random_state

    def _errors(self, residuals: np.ndarray, fit: bool) -> np.ndarray:
        from madbench.scoring.errors import area_errors, point_errors

        zero = np.zeros_like(residuals)
        if self.error == "point":
            return point_errors(residuals, zero, com=self.com)
        if fit or self.reference_quirks:
            out, stats = area_errors(residuals, zero, window=self.area_window, dx=self.dx, com=self.com,
                                     return_stats=True)
            if fit:
                self.area_stats_ = stats
            return out
        return area_errors(residuals, zero, window=self.area_window, dx=self.dx, com=self.com, stats=self.area_stats_)

    gives_alarms = True

    def fit(self, train: SeriesScores, sensors: list[str] | None = None, groups: dict | None = None,
            val_mask: np.ndarray | None = None) -> "M2ADScoring":
        from madbench.scoring.m2ad import M2ADScorer

        if train.residuals is None:
            raise ValueError("scoring=m2ad needs per-sensor residuals")
        two_sided = self.two_sided if self.two_sided is not None else self.error == "area"
        self.scorer_ = M2ADScorer(
            n_components=self.n_components, covariance_type=self.covariance_type, two_sided=two_sided,
            distribution=self.distribution, calibration=self.calibration,
            weights=self.weights if self.weights is not None else groups, alpha=self.alpha,
            random_state=self.random_state, reference_quirks=self.reference_quirks)
        self.scorer_.fit(self._errors(train.residuals, fit=True), sensor_names=sensors)
        return self

    def transform(self, s: SeriesScores) -> Scored:
        errors = self._errors(s.residuals, fit=False)
        p, sensor_p, combined = self.scorer_.score(errors)
        ok = bool(getattr(self.scorer_, "calibrated_", True))
        return Scored(score=combined, p=p, sensor_p=sensor_p, flags=self.scorer_.flags(p),
                      status="ok" if ok else "uncalibrated",
                      notes=[] if ok else ["train Fisher score has zero variance: calibration skipped, nothing flagged"],
                      sensor_logp=self.scorer_.sensor_log_pvalues(errors))
