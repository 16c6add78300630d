"""The scoring stage: turn placed scores/residuals into the final anomaly score.

Every scorer is fitted on the train split's scores (sklearn style) and then transforms a
split into a ``Scored``: ``score`` [T] (higher = more anomalous, NaN where unscored) and,
for calibrated scorers, ``p`` [T] (a p-value per step) and ``sensor_p`` [T, S].
"""
from __future__ import annotations

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
    """The objective's own per-step score, unchanged."""

    needs_residuals = False

    def fit(self, train: SeriesScores, sensors: list[str] | None = None, groups: dict | None = None) -> "RawScorer":
        return self

    def transform(self, s: SeriesScores) -> Scored:
        return Scored(score=np.asarray(s.step, dtype=np.float64))


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

    def fit(self, train: SeriesScores, sensors: list[str] | None = None, groups: dict | None = None) -> "M2ADScoring":
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
